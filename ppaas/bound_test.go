package ppaas

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"aéb", 2, "a…"}, // é is two bytes: the cut goes back to its start
		{"aéb", 3, "aé…"},
		{"€€", 4, "€…"},
		{"€€", 0, "…"},
	} {
		got := Clip(c.in, c.n)
		require.Equal(t, c.want, got, "Clip(%q, %d)", c.in, c.n)
		require.True(t, utf8.ValidString(got))
		require.LessOrEqual(t, len(got), c.n+len("…"))
	}
}

// The hostile review: the platform's providerReference and statusReason
// reached the POS's answer, its receipts and the journal at whatever length
// the platform wrote them. Both decoders (the plain one and encoding/json,
// which an escape selects) keep them to their bounds, cut on a character.
func TestDecodeBoundsPlatformText(t *testing.T) {
	huge := strings.Repeat("é", 100_000) // 200,000 bytes
	for _, escaped := range []bool{false, true} {
		reason := huge
		if escaped {
			reason = `\"` + huge // encoding/json decodes it
		}
		body := `{"transactionId":"qr-1","status":"approved","statusReason":"` + reason + `","providerReference":"P` + huge + `"}`
		tx, err := DecodeTransaction([]byte(body))
		require.NoError(t, err)
		require.LessOrEqual(t, len(tx.StatusReason), MaxTextLen+len("…"))
		require.LessOrEqual(t, len(tx.ProviderReference), MaxReferenceLen+len("…"))
		require.True(t, utf8.ValidString(tx.StatusReason) && utf8.ValidString(tx.ProviderReference))
		require.True(t, strings.HasPrefix(tx.ProviderReference, "Pé"), tx.ProviderReference)

		body = `{"eventId":"e-1","transactionId":"qr-1","status":"declined","statusReason":"` + reason + `","providerReference":"P` + huge + `","type":"` + huge + `"}`
		ev, err := DecodeEvent([]byte(body))
		require.NoError(t, err)
		require.LessOrEqual(t, len(ev.StatusReason), MaxTextLen+len("…"))
		require.LessOrEqual(t, len(ev.ProviderReference), MaxReferenceLen+len("…"))
		require.LessOrEqual(t, len(ev.Type), MaxIDLen+len("…"))
	}

	r, err := (*Statuses)(nil).DecodeRefund([]byte(`{"refundId":"` + huge + `","transactionId":"` + huge + `","status":"` + huge + `"}`))
	require.NoError(t, err)
	require.LessOrEqual(t, len(r.RefundID)+len(r.TransactionID)+len(r.Status)+len(r.RawStatus), 4*(MaxIDLen+len("…")))
	require.False(t, r.Done())

	var tx Transaction // one decoded otherwise: an error body's
	require.NoError(t, json.Unmarshal([]byte(`{"transactionId":"qr-1","statusReason":"`+huge+`"}`), &tx))
	tx.ClipText()
	require.LessOrEqual(t, len(tx.StatusReason), MaxTextLen+len("…"))
}

// The hostile review: every event id is marked seen in the store, so 400
// events with 30 KB ids grew its file to 33.6 MB. An event naming an id
// over MaxIDLen is refused, counted, and its error does not quote the id.
func TestDecodeRefusesOversizedIDs(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	fits := strings.Repeat("x", MaxIDLen)
	s := &Statuses{}
	for i, body := range []map[string]string{
		{"eventId": long, "transactionId": "qr-1"},
		{"eventId": "e", "transactionId": long},
		{"eventId": "e", "clientTransactionId": long},
		{"eventId": "e", "transactionId": "qr-1", "clientTransactionId": long},
	} {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		_, err = s.DecodeEvent(b)
		require.True(t, errors.Is(err, ErrOversized), "%v", err)
		require.NotContains(t, err.Error(), long)
		require.EqualValues(t, i+1, s.OversizedCount())
	}
	b, _ := json.Marshal(map[string]string{"eventId": fits, "transactionId": fits, "clientTransactionId": fits})
	_, err := s.DecodeEvent(b)
	require.NoError(t, err, "ids of MaxIDLen bytes are taken")

	_, err = s.DecodeTransaction([]byte(`{"transactionId":"` + long + `","status":"approved"}`))
	require.True(t, errors.Is(err, ErrOversized), "%v", err)
	require.EqualValues(t, 5, s.OversizedCount())
	_, err = s.DecodeTransaction([]byte(`{"transactionId":"` + fits + `","status":"approved"}`))
	require.NoError(t, err)
	require.EqualValues(t, 0, (*Statuses)(nil).OversizedCount())
}

// A chargeback phrase past the 200 bytes statusReason is clipped to is still
// read: the whole reason is searched before it is clipped (review D: a
// chargeback on top of a full POS refund went untold).
func TestChargebackPhrasePastTheClipIsSeen(t *testing.T) {
	reason := "Dispute case 4853-" + strings.Repeat("x", 190) + ": amount charged back by the issuer"
	body := `{"eventId":"e1","type":"transaction.status","transactionId":"t1","clientTransactionId":"c1","status":"refunded","sequence":1,"statusReason":"` + reason + `"}`
	s, err := ParseStatuses("")
	require.NoError(t, err)
	ev, err := s.DecodeEvent([]byte(body))
	require.NoError(t, err)
	require.Less(t, len(ev.StatusReason), len(reason), "clipped")
	require.NotContains(t, ev.StatusReason, "charged back")
	require.True(t, s.ChargedBack(ev))

	plain := strings.Replace(body, "charged back by the issuer", "refunded to the consumer", 1)
	ev, err = s.DecodeEvent([]byte(plain))
	require.NoError(t, err)
	require.False(t, s.ChargedBack(ev))
}
