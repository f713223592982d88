package ppaas

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Issue 10 item 8: a status spelling the agent does not know is a pending
// state (keep polling), reported once per spelling and counted — before it was
// a decode error, i.e. an unknown outcome with a reversal that could never
// resolve. Configured spellings map to the state they name.
func TestStatusesTolerantDecoding(t *testing.T) {
	var reported []string
	s, err := ParseStatuses("AUTHORIZED=approved, Refused=declined")
	require.NoError(t, err)
	s.OnUnknown = func(raw string) { reported = append(reported, raw) }

	tx, err := s.DecodeTransaction([]byte(`{"transactionId":"x","status":"authorized"}`))
	require.NoError(t, err)
	require.Equal(t, Approved, tx.Status)
	require.Equal(t, "authorized", tx.RawStatus)
	for range 3 {
		ev, err := s.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"PENDING_REVIEW"}`))
		require.NoError(t, err)
		require.Equal(t, Pending, ev.Status)
	}
	ev, err := s.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"unknown"}`))
	require.NoError(t, err)
	require.Equal(t, Pending, ev.Status, "the agent-only state is not a PPaaS answer")
	require.Equal(t, []string{"PENDING_REVIEW", "unknown"}, reported, "logged once per spelling")
	require.Equal(t, int64(4), s.UnknownCount(), "every occurrence counted")

	// Without configuration, our own spellings still decode, in any case.
	tx, err = DecodeTransaction([]byte(`{"transactionId":"x","status":"confirming"}`))
	require.NoError(t, err)
	require.Equal(t, Confirming, tx.Status)
	plain := &Statuses{}
	for raw, want := range map[string]State{
		"APPROVED": Approved, "Declined": Declined, "AWAITING_CONSUMER": AwaitingConsumer,
		"CANCELED": Cancelled, "canceled": Cancelled, "Cancelled": Cancelled, "REFUNDED": Refunded,
	} {
		ev, err := plain.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"` + raw + `"}`))
		require.NoError(t, err, raw)
		require.Equal(t, want, ev.Status, raw)
		require.Equal(t, raw, ev.RawStatus)
	}
	require.Zero(t, plain.UnknownCount(), "our own spellings are not unknown")
	ev, err = plain.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","type":"Transaction.Status","status":"APPROVED"}`))
	require.NoError(t, err)
	require.Equal(t, EventTypeStatus, ev.Type, "the event type in any case")
	require.Equal(t, Pending, plain.State("UNKNOWN"), "the agent-only state is not a PPaaS answer in any case")

	for _, bad := range []string{"AUTHORIZED", "AUTHORIZED=paid", "=approved", "X=unknown"} {
		_, err := ParseStatuses(bad)
		require.Error(t, err, bad)
	}
	// A peer cannot grow the remembered spellings without bound.
	for i := range 1000 {
		s.State(string(rune('A'+i%26)) + string(rune(i)))
	}
	require.LessOrEqual(t, len(s.seen), maxSeenSpellings)
}

func FuzzParseStatuses(f *testing.F) {
	f.Add("AUTHORIZED=approved,PENDING=pending")
	f.Add("=,,x=")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseStatuses(spec)
		if err != nil {
			return
		}
		for _, st := range s.m {
			if !st.wire() {
				t.Fatalf("mapped to a non-wire state %q", st)
			}
		}
	})
}

// A chargeback is told by explicit spellings — of the
// status itself or of the provider's status — recognised case, spaces and
// hyphens aside, with configurable additions, and by configurable reason
// phrases only when no status says it. A top-level chargeback status used to
// be an unknown spelling, i.e. pending: never news.
func TestChargebackSpellings(t *testing.T) {
	configured, err := ParseStatuses("AUTHORIZED=approved, Retrocession=charged_back")
	require.NoError(t, err)
	noReasons, err := ParseChargebackReasons("none")
	require.NoError(t, err)
	strict, err := ParseStatuses("")
	require.NoError(t, err)
	strict.SetChargebackReasons(noReasons)

	refunded := func(raw, provider, reason string) Event {
		e := Event{Status: Refunded, RawStatus: raw, StatusReason: reason}
		if provider != "" {
			e.Provider = map[string]string{"status": provider}
		}
		return e
	}
	for _, c := range []struct {
		name string
		s    *Statuses
		ev   Event
		want bool
	}{
		{"provider CHARGED_BACK (PTI)", nil, refunded("refunded", "CHARGED_BACK", ""), true},
		{"provider chargeback, lower case", nil, refunded("refunded", "chargeback", ""), true},
		{"provider Charged-Back", nil, refunded("refunded", "Charged-Back", ""), true},
		{"status CHARGED_BACK", nil, refunded("CHARGED_BACK", "", ""), true},
		{"status ' charged back '", nil, refunded(" charged back ", "", ""), true},
		{"provider REFUNDED", nil, refunded("refunded", "REFUNDED", ""), false},
		{"nothing says it", nil, refunded("refunded", "", "refunded by the provider"), false},
		{"reason only (default phrases)", nil, refunded("refunded", "", "Charged back by the card holder"), true},
		{"reason only, chargeback", nil, refunded("refunded", "", "bank chargeback"), true},
		{"reason only, phrases off", strict, refunded("refunded", "", "charged back by the card holder"), false},
		{"status says it, phrases off", strict, refunded("refunded", "CHARGED_BACK", ""), true},
		{"configured spelling, status", configured, refunded("RETROCESSION", "", ""), true},
		{"configured spelling, provider", configured, refunded("refunded", "retrocession", ""), true},
		{"configured spelling unknown elsewhere", nil, refunded("RETROCESSION", "", ""), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, c.s.ChargedBack(c.ev))
		})
	}

	// A chargeback status decodes to refunded (final), not to pending, and
	// is no unknown spelling.
	for _, raw := range []string{"CHARGED_BACK", "chargeback", "Retrocession"} {
		ev, err := configured.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"` + raw + `"}`))
		require.NoError(t, err)
		require.Equal(t, Refunded, ev.Status, raw)
		require.True(t, configured.ChargedBack(ev), raw)
	}
	require.Zero(t, configured.UnknownCount())
	ev, err := DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"RETROCESSION"}`))
	require.NoError(t, err)
	require.Equal(t, Pending, ev.Status, "not configured: unknown, pending")
}

func TestParseChargebackReasons(t *testing.T) {
	for spec, want := range map[string][]string{
		"":                              DefaultChargebackReasons,
		"none":                          {},
		" NONE ":                        {},
		"Charged back, retrocession ,,": {"charged back", "retrocession"},
	} {
		got, err := ParseChargebackReasons(spec)
		require.NoError(t, err, spec)
		require.Equal(t, want, got, spec)
	}
	for _, bad := range []string{",", " , ", "cb", "ok,chargeback"} {
		_, err := ParseChargebackReasons(bad)
		require.Error(t, err, bad)
	}
	_, err := ParseChargebackReasons(strings.Repeat("phrase,", maxChargebackReasons+1))
	require.ErrorContains(t, err, "at most")
}

func FuzzParseChargebackReasons(f *testing.F) {
	f.Add("charged back,chargeback")
	f.Add("none")
	f.Add(",,x")
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := ParseChargebackReasons(spec)
		if err != nil {
			return
		}
		if len(got) > maxChargebackReasons && len(got) != len(DefaultChargebackReasons) {
			t.Fatalf("%d phrases", len(got))
		}
		for _, p := range got {
			if p == "" || p != strings.ToLower(p) {
				t.Fatalf("phrase %q", p)
			}
		}
	})
}

// Review: "REFUNDED=charged_back" was accepted and made every plain refund a
// chargeback. A spelling is a chargeback or a status, never both, whatever
// the order of the entries; a chargeback spelling mapped to a status would
// answer a chargeback as that status.
func TestParseStatusesRefusesAChargebackSpellingThatIsAStatus(t *testing.T) {
	for _, spec := range []string{
		"REFUNDED=charged_back",
		"refunded=charged_back",
		"Awaiting-Consumer=charged_back",
		"approved=charged_back",
		"AUTHORIZED=approved, Authorized=charged_back",
		"AUTHORIZED=charged_back, AUTHORIZED=approved",
		"RETRO-CESSION=charged_back, RETRO CESSION=refunded",
		"CHARGED_BACK=approved",
		"chargeback=refunded",
	} {
		_, err := ParseStatuses(spec)
		require.Error(t, err, spec)
	}
	s, err := ParseStatuses("AUTHORIZED=approved, RETROCESSION=charged_back")
	require.NoError(t, err)
	ev := Event{RawStatus: "refunded", Status: s.State("refunded")}
	require.Equal(t, Refunded, ev.Status)
	require.False(t, s.ChargedBack(ev), "a plain refund stays a refund")
}

// A refund's status reads a configured spelling as the state it names (so a
// platform's REFUNDED is done); its own words are kept and not counted.
func TestDecodeRefundSpellings(t *testing.T) {
	s, err := ParseStatuses("REFUNDED=refunded, Refused=declined, AUTHORIZED=approved")
	require.NoError(t, err)
	for raw, want := range map[string]string{
		"REFUNDED": RefundDone, "refunded": RefundDone, "refused": "declined",
		"pending": "pending", "failed": "failed", "PROCESSING": "PROCESSING", "": "",
	} {
		r, err := s.DecodeRefund([]byte(`{"refundId":"rf","status":"` + raw + `","amount":{"amount":5,"currency":"EUR"}}`))
		require.NoError(t, err, raw)
		require.Equal(t, want, r.Status, raw)
		require.Equal(t, raw, r.RawStatus)
		require.Equal(t, Amount{Amount: 5, Currency: "EUR"}, r.Amount)
	}
	require.Zero(t, s.UnknownCount())
	for _, raw := range []string{"REFUNDED", "Refunded", "refunded"} { // done without configuration
		r, err := (*Statuses)(nil).DecodeRefund([]byte(`{"refundId":"rf","status":"` + raw + `"}`))
		require.NoError(t, err, raw)
		require.True(t, r.Done(), raw)
		require.Equal(t, raw, r.RawStatus)
	}
	_, err = s.DecodeRefund([]byte(`{"status":`))
	require.ErrorContains(t, err, "decode refund")
}

// FuzzDecodeRefund: without configured spellings a refund decodes exactly
// as json.Unmarshal did before DecodeRefund, RefundDone in any case read as
// RefundDone; with them only a configured spelling changes the status
// otherwise, to the state it names.
func FuzzDecodeRefund(f *testing.F) {
	f.Add([]byte(`{"refundId":"rf","clientRefundId":"c","transactionId":"t","status":"refunded","amount":{"amount":5,"currency":"EUR"},"createdAt":"2026-12-01T12:00:00Z"}`))
	f.Add([]byte(`{"refundId":"rf","status":"REFUNDED"}`))
	f.Add([]byte(`{"status":"Refused"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"status":1}`))
	s, err := ParseStatuses("REFUNDED=refunded, Refused=declined")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, in []byte) {
		var old Refund
		oldErr := json.Unmarshal(in, &old)
		got, err := (*Statuses)(nil).DecodeRefund(in)
		if (err != nil) != (oldErr != nil) {
			t.Fatalf("error %v, json.Unmarshal's %v", err, oldErr)
		}
		if err != nil {
			return
		}
		if got.RawStatus != old.Status {
			t.Fatalf("raw status %q, sent %q", got.RawStatus, old.Status)
		}
		got.RawStatus = ""
		if strings.EqualFold(old.Status, RefundDone) {
			old.Status = RefundDone // done in any case
		}
		if !reflect.DeepEqual(got, old) {
			t.Fatalf("unconfigured decode %+v, json.Unmarshal %+v", got, old)
		}
		mapped, err := s.DecodeRefund(in)
		if err != nil {
			t.Fatal(err)
		}
		raw := mapped.RawStatus
		if st, ok := s.configured(raw); ok {
			if mapped.Status != string(st) {
				t.Fatalf("configured %q decoded as %q, want %q", raw, mapped.Status, st)
			}
		} else if mapped.Status != old.Status {
			t.Fatalf("unconfigured %q decoded as %q", raw, mapped.Status)
		}
	})
}

// An unknown spelling is remembered (for OnUnknown's once per spelling) as a
// copy of at most 64 bytes: a status decoded by hand is a slice of its whole
// body, and 100 bodies of 1 MB with unknown statuses kept +63 MiB of heap
// alive when it was remembered as it came. The set stays bounded, a long
// spelling is told once and clipped at a character boundary.
func TestUnknownSpellingsKeepNoBody(t *testing.T) {
	s, err := ParseStatuses("")
	require.NoError(t, err)
	var reported []string
	s.OnUnknown = func(raw string) { reported = append(reported, raw) }
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pad := strings.Repeat("p", 1<<20)
	for i := range 100 {
		body := fmt.Sprintf(`{"transactionId":"t%d","statusReason":"%s","status":"weird-%d"}`, i, pad, i)
		tx, err := s.DecodeTransaction([]byte(body))
		require.NoError(t, err)
		require.Equal(t, Pending, tx.Status)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("100 unknown statuses in 1 MB bodies: heap retained %+d KiB", retained>>10)
	require.Less(t, retained, int64(4<<20), "the remembered spellings keep their bodies alive")
	require.Len(t, reported, maxSeenSpellings, "bounded: the first 64 distinct spellings")
	require.Len(t, s.seen, maxSeenSpellings)
	require.Equal(t, int64(100), s.UnknownCount(), "every occurrence counted")
	runtime.KeepAlive(s)

	s, err = ParseStatuses("")
	require.NoError(t, err)
	reported = nil
	s.OnUnknown = func(raw string) { reported = append(reported, raw) }
	long := strings.Repeat("é", 1<<10) // 2 bytes each: 64 bytes cut one in half
	for range 2 {
		_, err := s.DecodeTransaction([]byte(`{"transactionId":"t","status":"` + long + `"}`))
		require.NoError(t, err)
	}
	require.Len(t, reported, 1, "a long spelling is told once")
	require.Equal(t, strings.Repeat("é", 32), reported[0])
	require.True(t, utf8.ValidString(reported[0]))
}
