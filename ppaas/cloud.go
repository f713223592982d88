package ppaas

import (
	"encoding/json"
	"errors"
	"fmt"
)

// CloudFrame is one websocket text message between the platform's relay and
// the agent (our shape: the platform's is not public).
//
//   - "request", relay → agent: ID names the exchange on the relay, Nexo is
//     the POS's Nexo message.
//   - "answer", agent → relay: the same ID, Nexo is the POI's answer; none
//     when the message has no answer (Abort, an event from the POS).
//   - "ack", relay → agent: the relay has the answer of ID; the agent stops
//     redelivering it.
type CloudFrame struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Nexo json.RawMessage `json:"nexo,omitempty"`
}

// Cloud frame types.
const (
	CloudRequest = "request"
	CloudAnswer  = "answer"
	CloudAck     = "ack"
)

// MaxCloudIDLength bounds a relay's exchange id.
const MaxCloudIDLength = 64

// ParseCloudFrame reads a frame from the relay: a JSON object with a type
// and an id of 1 to MaxCloudIDLength characters; a request carries a JSON
// object.
func ParseCloudFrame(b []byte) (CloudFrame, error) {
	var f CloudFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return CloudFrame{}, fmt.Errorf("cloud frame: %w", err)
	}
	switch {
	case f.ID == "" || len(f.ID) > MaxCloudIDLength:
		return CloudFrame{}, fmt.Errorf("cloud frame: id must be 1 to %d characters", MaxCloudIDLength)
	case f.Type != CloudRequest && f.Type != CloudAck && f.Type != CloudAnswer:
		return CloudFrame{}, fmt.Errorf("cloud frame: unknown type %q", f.Type)
	case f.Type == CloudRequest && (len(f.Nexo) == 0 || f.Nexo[0] != '{'):
		return CloudFrame{}, errors.New("cloud frame: a request carries a Nexo message (a JSON object)")
	}
	return f, nil
}
