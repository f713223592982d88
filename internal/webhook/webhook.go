// Package webhook posts a notification to a peer's URL the one way this
// project does it: POST the body, read at most 64 KiB of the answer (so the
// connection can be reused, and a peer cannot make us read without end), and
// take any status but 2xx as a failure the caller retries or reports. The
// agent notifies the POS (Nexo events) and a remote display with it; the
// simulated Retail API calls the POS's webhook with it.
package webhook

import (
	"bytes"
	"context"
	"io"
	"net/http"
)

// MaxDrain is how much of an answer's body Post reads before closing it.
const MaxDrain = 64 << 10

// StatusError is a non-2xx answer.
type StatusError struct {
	Code   int
	Status string // as the response gave it, "502 Bad Gateway"
}

func (e *StatusError) Error() string { return "answered HTTP " + e.Status }

// Post sends body to url with the content type and extra headers given.
// A transport error is returned as is; a non-2xx answer as a *StatusError.
func Post(ctx context.Context, c *http.Client, url, contentType string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxDrain))
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	return nil
}
