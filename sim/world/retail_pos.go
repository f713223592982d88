package world

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
)

// RetailClient is a cloud POS's client of the Retail API (issue 16).
type RetailClient struct {
	BaseURL string       // e.g. https://127.0.0.1:9021
	Key     string       // the POS key (default RetailDefaultKey)
	HTTP    *http.Client // trusts the platform's CA
}

func (c *RetailClient) key() string {
	if c.Key == "" {
		return sim.RetailDefaultKey
	}
	return c.Key
}

func (c *RetailClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("retail %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("retail %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("retail %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("retail %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// Devices lists the store's devices and their payment methods.
func (c *RetailClient) Devices(ctx context.Context) ([]sim.RetailDevice, error) {
	var out struct {
		Devices []sim.RetailDevice `json:"devices"`
	}
	err := c.call(ctx, http.MethodGet, sim.RetailDevicesPath, nil, &out)
	return out.Devices, err
}

// Open opens a session from the POS saleID to deviceID; webhookURL (may be
// empty) receives the answers of asynchronous messages.
func (c *RetailClient) Open(ctx context.Context, deviceID, saleID, webhookURL string) (sim.RetailSession, error) {
	var s sim.RetailSession
	err := c.call(ctx, http.MethodPost, sim.RetailSessionsPath, map[string]string{"deviceId": deviceID, "saleId": saleID, "webhookUrl": webhookURL}, &s)
	return s, err
}

// Close closes a session.
func (c *RetailClient) Close(ctx context.Context, s sim.RetailSession) error {
	return c.call(ctx, http.MethodDelete, sim.RetailSessionsPath+"/"+s.SessionID, nil, nil)
}

// POS returns a Nexo v5 POS whose messages go through session s
// (synchronously: each call returns the device's answer).
func (c *RetailClient) POS(s sim.RetailSession) *POS {
	hc := *c.HTTP
	hc.Transport = keyTransport{base: c.HTTP.Transport, key: c.key()}
	return &POS{
		Client: &nexo.Client{URL: strings.TrimSuffix(c.BaseURL, "/") + s.MessagesURL, HTTP: &hc, Codec: nexo.JSON5Codec{}},
		SaleID: s.SaleID,
		POIID:  s.DeviceID,
	}
}

// SendAsync sends an encoded Nexo v5 message with mode=async: the answer
// goes to the session's webhook; it returns the relay's message id.
func (c *RetailClient) SendAsync(ctx context.Context, s sim.RetailSession, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+s.MessagesURL+"?mode=async", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.key())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("retail async message: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		MessageID string `json:"messageId"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("retail async message: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("retail async message: %w", err)
	}
	return out.MessageID, nil
}

type keyTransport struct {
	base http.RoundTripper
	key  string
}

func (t keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.key)
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}
	// The Retail API's own refusal (no device answer): say it in words
	// rather than let the Nexo client take it for a malformed message.
	defer resp.Body.Close()
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		return nil, fmt.Errorf("retail API answered %s", resp.Status)
	}
	return nil, fmt.Errorf("retail API answered %s: %s: %s", resp.Status, e.Error, e.Message)
}

// openCloudPOS waits for w's agent on the relay and opens a cloud POS
// session (SaleID CLOUD) to it, with the world's trusted HTTP client.
func openCloudPOS(ctx context.Context, w *World, hc *http.Client) (*POS, error) {
	cc := w.Agent.Cloud()
	if cc == nil {
		return nil, fmt.Errorf("the agent has no cloud_url")
	}
	if err := cc.WaitConnected(ctx); err != nil {
		return nil, fmt.Errorf("agent not on the relay: %w", err)
	}
	rc := &RetailClient{BaseURL: w.PPaaS.RetailURL(), HTTP: hc}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		devs, err := rc.Devices(ctx)
		for _, d := range devs {
			if d.DeviceID == w.Agent.POIID() && d.Connected {
				s, err := rc.Open(ctx, d.DeviceID, "CLOUD", "")
				if err != nil {
					return nil, err
				}
				return rc.POS(s), nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("device not listed by the relay (%v): %w", err, ctx.Err())
		case <-tick.C:
		}
	}
}
