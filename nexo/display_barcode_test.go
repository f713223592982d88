package nexo

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDisplayBarcodeValidation(t *testing.T) {
	msg := func(content string) []byte {
		return []byte(`{"SaleToPOIRequest":{"MessageHeader":{"MessageClass":"Device","MessageCategory":"Display","MessageType":"Request","ServiceID":"1","SaleID":"POS1","POIID":"P"},` +
			`"DisplayRequest":{"DisplayOutput":[{"Device":"CustomerDisplay","InfoQualify":"Display","OutputContent":` + content + `}]}}}`)
	}
	req, err := JSONCodec{}.DecodeRequest(msg(`{"OutputFormat":"BarCode","OutputBarcode":{"BarcodeType":"QRCode","BarcodeValue":"hello"}}`))
	require.NoError(t, err)
	require.Equal(t, "hello", req.Display.Outputs[0].QRCode)
	for name, content := range map[string]string{
		"made-up format": `{"OutputFormat":"QR","OutputBarcode":{"BarcodeType":"QRCode","BarcodeValue":"x"}}`,
		"no barcode":     `{"OutputFormat":"BarCode"}`,
		"EAN13":          `{"OutputFormat":"BarCode","OutputBarcode":{"BarcodeType":"EAN13","BarcodeValue":"4006381333931"}}`,
		"empty value":    `{"OutputFormat":"BarCode","OutputBarcode":{"BarcodeType":"QRCode"}}`,
		"too long":       `{"OutputFormat":"BarCode","OutputBarcode":{"BarcodeType":"QRCode","BarcodeValue":"` + strings.Repeat("a", 3000) + `"}}`,
	} {
		_, err := JSONCodec{}.DecodeRequest(msg(content))
		var ne *Error
		require.ErrorAs(t, err, &ne, name)
		require.Equal(t, MessageFormat, ne.Condition, name)
		require.Contains(t, ne.Text, "OutputContent", name)
	}
}
