package nexo

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Codec converts messages between an encoding on the wire and the
// envelope-independent model. JSONCodec and XMLCodec speak Nexo 3.x.
type Codec interface {
	// ContentType is the media type the encoding is sent with.
	ContentType() string
	DecodeRequest(b []byte) (*Request, error)
	EncodeRequest(r *Request) ([]byte, error)
	DecodeResponse(b []byte) (*Response, error)
	EncodeResponse(r *Response) ([]byte, error)
}

// Root element names of the Nexo 3.x envelope.
const (
	rootRequest  = "SaleToPOIRequest"
	rootResponse = "SaleToPOIResponse"
)

// wireCodec is a Nexo 3.x encoding at the envelope level; the server needs
// this level to open and seal SecurityTrailer messages.
type wireCodec interface {
	Codec
	decodeWire(b []byte) (root string, m *wireMessage, err error)
	encodeWire(root string, m *wireMessage) ([]byte, error)
}

// JSONCodec is the Nexo 3.x JSON encoding (root objects SaleToPOIRequest and
// SaleToPOIResponse, PascalCase members) used by existing Nexo JSON terminal
// APIs.
type JSONCodec struct{}

// XMLCodec is the Nexo 3.x XML encoding with the same names (simple values as
// attributes, structures as elements, as in the Nexo XML schema).
type XMLCodec struct{}

func (JSONCodec) ContentType() string { return "application/json" }
func (XMLCodec) ContentType() string  { return "application/xml" }

func (JSONCodec) decodeWire(b []byte) (string, *wireMessage, error) {
	var env jsonEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return "", nil, formatError(te.Field, "wrong type %s", te.Value)
		}
		return "", nil, formatError("message", "invalid JSON: %v", err)
	}
	switch {
	case env.SaleToPOIRequest != nil && env.SaleToPOIResponse != nil:
		return "", nil, formatError("message", "both SaleToPOIRequest and SaleToPOIResponse")
	case env.SaleToPOIRequest != nil:
		return rootRequest, env.SaleToPOIRequest, nil
	case env.SaleToPOIResponse != nil:
		return rootResponse, env.SaleToPOIResponse, nil
	}
	return "", nil, formatError("SaleToPOIRequest", "missing")
}

func (JSONCodec) encodeWire(root string, m *wireMessage) ([]byte, error) {
	var env jsonEnvelope
	if root == rootRequest {
		env.SaleToPOIRequest = m
	} else {
		env.SaleToPOIResponse = m
	}
	b, err := json.Marshal(&env)
	if err != nil {
		return nil, fmt.Errorf("encode nexo JSON: %w", err)
	}
	return b, nil
}

func (XMLCodec) decodeWire(b []byte) (string, *wireMessage, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			if err == io.EOF {
				return "", nil, formatError("SaleToPOIRequest", "missing")
			}
			return "", nil, formatError("message", "invalid XML: %v", err)
		}
		if _, ok := tok.(xml.Directive); ok {
			// No DTD: nothing to expand, nothing to fetch.
			return "", nil, formatError("message", "invalid XML: DTD or other directive not allowed")
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		root := se.Name.Local
		if root != rootRequest && root != rootResponse {
			return "", nil, formatError("SaleToPOIRequest", "missing (root element is %q)", clip(root, 32))
		}
		var m wireMessage
		if err := d.DecodeElement(&m, &se); err != nil {
			return "", nil, formatError(root, "invalid XML: %v", err)
		}
		if err := xmlEnd(d); err != nil {
			return "", nil, err
		}
		return root, &m, nil
	}
}

// xmlEnd refuses anything but white space after the root element, as the
// JSON decoder refuses trailing data.
func xmlEnd(d *xml.Decoder) error {
	for {
		tok, err := d.Token()
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return formatError("message", "invalid XML after the root element: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) == 0 {
			continue
		}
		return formatError("message", "invalid XML: content after the root element")
	}
}

func (XMLCodec) encodeWire(root string, m *wireMessage) ([]byte, error) {
	m.XMLName = xml.Name{Local: root}
	b, err := xml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode nexo XML: %w", err)
	}
	return append([]byte(xml.Header), b...), nil
}

func (c JSONCodec) DecodeRequest(b []byte) (*Request, error)   { return decodeRequest(c, b) }
func (c XMLCodec) DecodeRequest(b []byte) (*Request, error)    { return decodeRequest(c, b) }
func (c JSONCodec) DecodeResponse(b []byte) (*Response, error) { return decodeResponse(c, b) }
func (c XMLCodec) DecodeResponse(b []byte) (*Response, error)  { return decodeResponse(c, b) }
func (c JSONCodec) EncodeRequest(r *Request) ([]byte, error)   { return encodeRequest(c, r) }
func (c XMLCodec) EncodeRequest(r *Request) ([]byte, error)    { return encodeRequest(c, r) }
func (c JSONCodec) EncodeResponse(r *Response) ([]byte, error) { return encodeResponse(c, r) }
func (c XMLCodec) EncodeResponse(r *Response) ([]byte, error)  { return encodeResponse(c, r) }

func decodeRequest(c wireCodec, b []byte) (*Request, error) {
	root, m, err := c.decodeWire(b)
	if err != nil {
		return nil, err
	}
	if root != rootRequest {
		return nil, formatError("SaleToPOIRequest", "missing (got %s)", root)
	}
	if m.NexoBlob != "" || m.SecurityTrailer != nil {
		return nil, formatError("NexoBlob", "message is protected; no key to open it")
	}
	return requestFromWire(m)
}

func decodeResponse(c wireCodec, b []byte) (*Response, error) {
	root, m, err := c.decodeWire(b)
	if err != nil {
		return nil, err
	}
	if root != rootResponse {
		// A POI answers a message it cannot parse with an EventNotification
		// Reject (as existing Nexo JSON terminal APIs do).
		if m.EventNotification != nil && m.EventNotification.EventToNotify == "Reject" {
			return nil, &Error{Condition: MessageFormat, Text: m.EventNotification.EventDetails}
		}
		return nil, formatError("SaleToPOIResponse", "missing (got %s)", root)
	}
	if m.NexoBlob != "" || m.SecurityTrailer != nil {
		return nil, formatError("NexoBlob", "message is protected; no key to open it")
	}
	return responseFromWire(m)
}

func encodeRequest(c wireCodec, r *Request) ([]byte, error) {
	m, err := requestToWire(r)
	if err != nil {
		return nil, err
	}
	return c.encodeWire(rootRequest, m)
}

func encodeResponse(c wireCodec, r *Response) ([]byte, error) {
	m, err := responseToWire(r)
	if err != nil {
		return nil, err
	}
	return c.encodeWire(rootResponse, m)
}

// codecFor picks the encoding from a Content-Type, falling back to sniffing
// the body: POS software is not always careful with its headers.
func codecFor(contentType string, body []byte) wireCodec {
	ct := strings.ToLower(contentType)
	switch {
	case strings.Contains(ct, "xml"):
		return XMLCodec{}
	case strings.Contains(ct, "json"):
		return JSONCodec{}
	}
	if t := bytes.TrimLeft(body, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '<' {
		return XMLCodec{}
	}
	return JSONCodec{}
}

// isNexoV5 tells, from the first member name of a JSON body (a bounded,
// cheap look), whether the message is in the Nexo v5 envelope
// (SaleToPOIServiceRequest and the other casp roots) rather than 3.x. The
// server then serves it with the v5 codec (server5.go).
func isNexoV5(body []byte) bool { return isV5Root(sniffRoot5(body)) }
