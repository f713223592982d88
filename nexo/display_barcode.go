package nexo

// DisplayRequest with a QR code (issue 14): OutputFormat BarCode with an
// OutputBarcode of BarcodeType QRCode, as POS systems send to show a code on
// the terminal.

// OutputFormat and BarcodeType values the agent reads and writes (Nexo code
// lists).
const (
	OutputText    = "Text"
	OutputBarCode = "BarCode"
	BarcodeQRCode = "QRCode"
)

// maxBarcodeValue bounds a QR code's content: a version 40 QR code holds at
// most 2953 bytes.
const maxBarcodeValue = 2953

// barcodeFromWire validates an OutputContent's format and returns the QR
// code to show ("" for Text).
func barcodeFromWire(field string, c *wireOutputContent) (string, *Error) {
	switch c.OutputFormat {
	case OutputText:
		return "", nil
	case OutputBarCode:
	default:
		return "", formatError(field+".OutputFormat", "unsupported value %q (Text or BarCode)", clip(c.OutputFormat, 32))
	}
	b := c.OutputBarcode
	switch {
	case b == nil:
		return "", formatError(field+".OutputBarcode", "missing")
	case b.BarcodeType != BarcodeQRCode:
		return "", formatError(field+".OutputBarcode.BarcodeType", "unsupported value %q (QRCode)", clip(b.BarcodeType, 32))
	case b.BarcodeValue == "":
		return "", formatError(field+".OutputBarcode.BarcodeValue", "missing")
	case len(b.BarcodeValue) > maxBarcodeValue:
		return "", formatError(field+".OutputBarcode.BarcodeValue", "longer than %d bytes", maxBarcodeValue)
	}
	return b.BarcodeValue, nil
}
