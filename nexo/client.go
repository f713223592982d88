package nexo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Client is a POS-side Nexo client: it sends a Request to a POI's /nexo
// endpoint and decodes the Response. The simulator's POS driver and the
// tests use it.
type Client struct {
	// URL is the POI endpoint, e.g. https://127.0.0.1:8443/nexo.
	URL string
	// HTTP is the HTTP client (with the POI's CA); http.DefaultClient if nil.
	HTTP *http.Client
	// Codec is the encoding, JSONCodec or XMLCodec; JSON if nil.
	Codec Codec
	// Key protects requests and opens responses when not nil.
	Key *Key
}

// maxResponseBytes bounds what the client reads back.
const maxResponseBytes = 1 << 20

// Do sends req and returns the POI's response. Abort (and notifications) have
// no response: Do returns nil, nil. A Failure response is returned as is
// (see Response.Err); a refused message (HTTP 401, or an EventNotification
// Reject) comes back as an error that wraps *Error.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	if c5, ok := c.Codec.(JSON5Codec); ok {
		return c.do5(ctx, c5, req)
	}
	wc, ok := c.Codec.(wireCodec)
	if c.Codec == nil {
		wc, ok = JSONCodec{}, true
	}
	if !ok {
		return nil, errors.New("nexo client: codec is not a Nexo 3.x codec")
	}
	body, err := sealRequest(wc, c.Key, req)
	if err != nil {
		return nil, fmt.Errorf("nexo client: encode %s: %w", req.Header.Category, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("nexo client: %w", err)
	}
	hreq.Header.Set("Content-Type", wc.ContentType())
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	hresp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("nexo client: %s: %w", req.Header.Category, err)
	}
	defer hresp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("nexo client: read %s response: %w", req.Header.Category, err)
	}
	if len(bytes.TrimSpace(rb)) == 0 {
		if hresp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("nexo client: POI answered %s", hresp.Status)
		}
		return nil, nil
	}
	resp, derr := c.decode(wc, rb)
	if hresp.StatusCode/100 != 2 {
		if resp != nil {
			return resp, fmt.Errorf("nexo client: POI answered %s: %w", hresp.Status, resp.Err())
		}
		return nil, fmt.Errorf("nexo client: POI answered %s: %w", hresp.Status, derr)
	}
	if derr != nil {
		return nil, fmt.Errorf("nexo client: decode %s response: %w", req.Header.Category, derr)
	}
	return resp, nil
}

func (c *Client) decode(wc wireCodec, b []byte) (*Response, error) {
	root, m, err := wc.decodeWire(b)
	if err != nil {
		return nil, err
	}
	if root == rootRequest {
		if ev := m.EventNotification; ev != nil && ev.EventToNotify == "Reject" {
			return nil, &Error{Condition: MessageFormat, Text: "rejected: " + ev.EventDetails}
		}
		return nil, formatError("SaleToPOIResponse", "missing")
	}
	if m.NexoBlob != "" || m.SecurityTrailer != nil {
		if c.Key == nil {
			return nil, formatError("NexoBlob", "response is protected; no key to open it")
		}
		_, inner, cerr := c.Key.openMessage(wc, root, m)
		if cerr != nil {
			return nil, fmt.Errorf("open response: %w", cerr)
		}
		m = inner
	} else if c.Key != nil {
		// A refusal (HTTP 401) comes back in clear: the POI could not trust
		// our key. Anything else in clear is not to be believed.
		r, err := responseFromWire(m)
		if err == nil && r.Status.Result == Failure {
			return r, nil
		}
		return nil, &cryptoError{cryptoUnprotected, "response is not protected"}
	}
	return responseFromWire(m)
}
