package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
)

// EventsPath is the device events ingest endpoint of the simulated PPaaS: the agent's
// outbox forwarder delivers transaction results, receipts and device status here.
// Each event carries an Idempotency-Key; a repeated key is acknowledged again but
// stored once, which is what makes at-least-once delivery exactly-once here.
const EventsPath = "/device-events/v1/events"

// IngestedEvent is one event received from a device.
type IngestedEvent struct {
	Serial   string          `json:"serial"`
	Key      string          `json:"idempotencyKey"`
	Kind     string          `json:"kind"`
	Payload  json.RawMessage `json:"payload"`
	Received time.Time       `json:"received"`
}

type ingest struct {
	mu         sync.Mutex
	events     []IngestedEvent
	seen       map[string]bool
	duplicates int
}

func (in *ingest) handle(p *PPaaS) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, _ := DeviceFrom(r.Context())
		key := r.Header.Get("Idempotency-Key")
		if key == "" || len(key) > 128 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "message": "Idempotency-Key header (1-128 characters) is required"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 256<<10))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "too_large", "message": "event over 256 KiB"})
			return
		}
		if !json.Valid(body) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "message": "body must be JSON"})
			return
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.seen[d.Serial+"/"+key] {
			in.duplicates++
			writeJSON(w, http.StatusOK, map[string]any{"status": "duplicate", "idempotencyKey": key})
			return
		}
		if in.seen == nil {
			in.seen = map[string]bool{} // the zero ingest is ready to use
		}
		in.seen[d.Serial+"/"+key] = true
		in.events = append(in.events, IngestedEvent{Serial: d.Serial, Key: key, Kind: r.Header.Get("X-Event-Kind"), Payload: body, Received: p.cfg.Now()})
		writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "idempotencyKey": key})
	}
}

// IngestStats are the events received and the duplicates sent (and not stored).
type IngestStats struct {
	Events     int `json:"events"`
	Duplicates int `json:"duplicates"`
}

// Ingested returns a copy of the events received so far, in arrival order.
func (p *PPaaS) Ingested() ([]IngestedEvent, IngestStats) {
	p.ingest.mu.Lock()
	defer p.ingest.mu.Unlock()
	return append([]IngestedEvent(nil), p.ingest.events...), IngestStats{Events: len(p.ingest.events), Duplicates: p.ingest.duplicates}
}

func (p *PPaaS) eventRoutes() {
	p.mux.HandleFunc("POST "+EventsPath, p.device(p.ingest.handle(p)))
	p.control.HandleFunc("GET /control/events", func(w http.ResponseWriter, _ *http.Request) {
		ev, st := p.Ingested()
		writeJSON(w, http.StatusOK, map[string]any{"stats": st, "events": ev})
	})
}
