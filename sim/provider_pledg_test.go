package sim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// seedNotification is the seed's example, whose signature with the secret
// "SECRET" the seed gives.
func seedNotification() pledgNotification {
	return pledgNotification{
		CreatedAt: "2019-04-04T12:20:34.97138Z", Error: "", ID: "test-valid",
		Reference: "PLEDG_1086986786391", Sandbox: "true", Status: "completed",
		Metadata: map[string]any{"foo": "bar"}, AdditionalData: map[string]any{"xx": "yy"},
	}
}

func TestPledgSignatureSeedVector(t *testing.T) {
	require.Equal(t, "B1C777835C01CA96AC4C3097FD46A7CA49B92BE157EDE0CB3552880D12A15359", pledgSignature(seedNotification(), "SECRET"))

	// The seed's body verbatim verifies.
	body := `{"created_at": "2019-04-04T12:20:34.97138Z", "id": "test-valid", "additional_data": {"xx": "yy"},
	 "metadata": {"foo":"bar"}, "status": "completed", "sandbox": "true", "error": "",
	 "reference": "PLEDG_1086986786391", "signature": "B1C777835C01CA96AC4C3097FD46A7CA49B92BE157EDE0CB3552880D12A15359"}`
	n, err := decodePledgNotification([]byte(body), "SECRET")
	require.NoError(t, err)
	require.Equal(t, "completed", n.Status)
	require.Equal(t, "PLEDG_1086986786391", n.Reference)
}

func TestPledgDecode(t *testing.T) {
	const secret = "s3cret"
	sign := func(mode string, mod func(*pledgNotification)) []byte {
		n := seedNotification()
		if mod != nil {
			mod(&n)
		}
		b, err := encodePledgNotification(n, mode, secret)
		require.NoError(t, err)
		return b
	}
	tamper := func(b []byte, from, to string) []byte { return []byte(strings.Replace(string(b), from, to, 1)) }
	otherSecret := func(mode string) []byte {
		b, err := encodePledgNotification(seedNotification(), mode, "wrong")
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name    string
		body    []byte
		wantErr error // nil: valid
		anyErr  bool
	}{
		{name: "sha256", body: sign(PledgSHA256, nil)},
		{name: "sha256 lower-case hex", body: tamper(sign(PledgSHA256, nil), pledgSignature(seedNotification(), secret), strings.ToLower(pledgSignature(seedNotification(), secret)))},
		{name: "jwt", body: sign(PledgJWT, nil)},
		{name: "sha256 unsigned metadata may change", body: tamper(sign(PledgSHA256, nil), `"foo":"bar"`, `"foo":"baz"`)},
		{name: "sha256 status changed", body: tamper(sign(PledgSHA256, nil), `"status":"completed"`, `"status":"failed"`), wantErr: ErrPledgSignature},
		{name: "sha256 wrong secret", body: otherSecret(PledgSHA256), wantErr: ErrPledgSignature},
		{name: "jwt wrong secret", body: otherSecret(PledgJWT), wantErr: ErrPledgSignature},
		{name: "jwt alg none", body: []byte(`{"signature":"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJyZWZlcmVuY2UiOiJQTEVER18xIiwic3RhdHVzIjoiY29tcGxldGVkIn0."}`), wantErr: ErrPledgSignature},
		{name: "no signature", body: []byte(`{"reference":"PLEDG_1","status":"completed"}`), wantErr: ErrPledgSignature},
		{name: "not json", body: []byte(`{"reference":`), anyErr: true},
		{name: "signed but no reference", body: sign(PledgSHA256, func(n *pledgNotification) { n.Reference = "" }), anyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := decodePledgNotification(tc.body, secret)
			switch {
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
			case tc.anyErr:
				require.Error(t, err)
			default:
				require.NoError(t, err)
				require.Equal(t, "PLEDG_1086986786391", n.Reference)
				require.Equal(t, "completed", n.Status)
			}
		})
	}
}

func TestPledgSplit(t *testing.T) {
	tests := []struct {
		amount int64
		n      int
		want   []int64
		err    bool
	}{
		{amount: 2000, n: 3, want: []int64{668, 666, 666}},
		{amount: 2000, n: 1, want: []int64{2000}},
		{amount: 2, n: 3, err: true},
		{amount: 2000, n: 0, err: true},
		{amount: 2000, n: pledgMaxShares + 1, err: true},
	}
	for _, tc := range tests {
		shares, err := split(tc.amount, tc.n)
		if tc.err {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		var got []int64
		for _, s := range shares {
			got = append(got, s.Amount)
		}
		require.Equal(t, tc.want, got)
	}
	for _, d := range []struct {
		in   string
		n    int
		isIn bool
	}{{"dinner shares=3", 3, true}, {"Shares: 4 friends", 4, true}, {"no split", 0, false}, {"sharesx=2", 0, false}} {
		n, ok := sharesInDescription(d.in)
		require.Equal(t, d.isIn, ok, d.in)
		require.Equal(t, d.n, n, d.in)
	}
}

// FuzzDecodePledgNotification: no input panics, and whatever verifies was
// signed with the secret (re-signing it gives the same signature or a JWT).
func FuzzDecodePledgNotification(f *testing.F) {
	const secret = "SECRET"
	for _, mode := range []string{PledgSHA256, PledgJWT} {
		b, err := encodePledgNotification(seedNotification(), mode, secret)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(`{"signature":"a.b.c"}`))
	f.Add([]byte(`{"reference":"x","status":"completed","signature":"00"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := decodePledgNotification(body, secret)
		if err != nil {
			return
		}
		if n.Reference == "" || n.Status == "" {
			t.Fatalf("accepted a notification without reference or status: %+v", n)
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			t.Fatal("accepted a body that is not a JSON object")
		}
		if n.Signature != "" && !strings.EqualFold(n.Signature, pledgSignature(n, secret)) {
			t.Fatalf("accepted a sha256 notification with a wrong signature: %+v", n)
		}
	})
}
