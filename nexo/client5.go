package nexo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// do5 is Do for the Nexo v5 codec: the same exchange, in the v5 envelope.
// A rejection (casp.013) comes back as an error wrapping *Error.
func (c *Client) do5(ctx context.Context, codec JSON5Codec, req *Request) (*Response, error) {
	if c.Key != nil {
		return nil, errors.New("nexo client: message protection is not supported with Nexo v5")
	}
	body, err := codec.EncodeRequest(req)
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
	resp, derr := codec.DecodeResponse(rb)
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
