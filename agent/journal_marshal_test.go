package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// The journal's QR transitions are written without encoding/json but must be
// its bytes exactly: recovery and journaledEvent read them with it, and files
// written before hold them.
func TestMarshalTransitionIsJSONMarshal(t *testing.T) {
	now := time.Now()
	for _, tr := range []qr.Transition{
		{},
		{ClientTransactionID: "0b7c6f0e-8f1e-4a53-9d0c-3c2f8f8e1a11", From: "", To: ppaas.Created, At: now, Source: "agent"},
		{ClientTransactionID: "c", TransactionID: "qr-1", From: ppaas.Created, To: ppaas.Approved, At: now.UTC(), Source: "event", EventID: "ev<1>&\"", Sequence: 7, Reason: "line\nbreak \u2028 \xff"},
		{ClientTransactionID: "c", To: qr.Unknown, At: time.Date(2026, 3, 1, 10, 1, 0, 0, time.FixedZone("CET", 3600)), Source: "agent", Reason: "create: Post \"https://x/y\": EOF", Sequence: -1},
	} {
		want, err := json.Marshal(tr)
		require.NoError(t, err)
		got, err := marshalTransition(tr)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
		var back qr.Transition
		require.NoError(t, json.Unmarshal(got, &back))
	}
	_, err := marshalTransition(qr.Transition{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err, "a time encoding/json refuses is refused")
}

func FuzzMarshalTransition(f *testing.F) {
	f.Add("c", "qr-1", "created", "approved", int64(1772355660), int64(5), 3600, "event", "ev-1", int64(3), "")
	f.Add("<&>", "\xff", "\u2028", "", int64(0), int64(0), 0, "", "", int64(-9), "\x00\t")
	f.Fuzz(func(t *testing.T, ctid, id, from, to string, sec, nsec int64, off int, source, eventID string, seq int64, reason string) {
		tr := qr.Transition{ClientTransactionID: ctid, TransactionID: id, From: ppaas.State(from), To: ppaas.State(to),
			At: time.Unix(sec, nsec).In(time.FixedZone("z", off)), Source: source, EventID: eventID, Sequence: seq, Reason: reason}
		want, werr := json.Marshal(tr)
		got, gerr := marshalTransition(tr)
		require.Equal(t, werr == nil, gerr == nil, "%v / %v", werr, gerr)
		require.Equal(t, string(want), string(got))
	})
}
