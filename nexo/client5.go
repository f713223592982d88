package nexo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// do5 is Do for the Nexo v5 codec: the same exchange, in the v5 envelope.
// A rejection (casp.013) comes back as an error wrapping *Error.
func (c *Client) do5(ctx context.Context, codec JSON5Codec, req *Request) (*Response, error) {
	root, wm, err := request5ToWire(req, protocolVersion5, codec.now())
	var body []byte
	if err == nil {
		if c.Key != nil {
			body, err = c.Key.seal5(root, wm, nil)
		} else {
			body, err = encode5(root, wm)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nexo client: encode v5 %s: %w", req.Header.Category, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("nexo client: %w", err)
	}
	hreq.Header.Set("Content-Type", codec.ContentType())
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	hresp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("nexo client: v5 %s: %w", req.Header.Category, err)
	}
	defer hresp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("nexo client: read v5 %s response: %w", req.Header.Category, err)
	}
	if len(bytes.TrimSpace(rb)) == 0 {
		if hresp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("nexo client: POI answered %s", hresp.Status)
		}
		return nil, nil
	}
	resp, derr := c.decode5(rb)
	switch {
	case derr != nil && hresp.StatusCode/100 != 2:
		return nil, fmt.Errorf("nexo client: POI answered %s: %w", hresp.Status, derr)
	case derr != nil:
		return nil, fmt.Errorf("nexo client: v5 %s: %w", req.Header.Category, derr)
	case hresp.StatusCode/100 != 2:
		return resp, fmt.Errorf("nexo client: POI answered %s: %w", hresp.Status, resp.Err())
	}
	return resp, nil
}

// decode5 decodes a v5 answer, opening it with the client's key if any.
func (c *Client) decode5(b []byte) (*Response, error) {
	root, m, e := decode5(b)
	if e != nil {
		return nil, e
	}
	switch {
	case m.NexoBlob != "" || m.SecurityTrailer != nil:
		if c.Key == nil {
			return nil, formatError("NexoBlob", "response is protected; no key to open it")
		}
		inner, cerr := c.Key.open5(root, m)
		if cerr != nil {
			return nil, fmt.Errorf("open v5 response: %w", cerr)
		}
		m = inner
	case c.Key != nil && root != root5Rejection:
		// A refusal (HTTP 401) comes back in clear: the POI could not trust
		// our key. Anything else in clear is not to be believed.
		r, err := response5FromWire(root, m)
		if err == nil && r.Status.Result == Failure {
			return r, nil
		}
		return nil, &cryptoError{cryptoUnprotected, "response is not protected"}
	}
	return response5FromWire(root, m)
}
