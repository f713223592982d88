package nexo

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// bodyFields are the names of a Request's or Response's body pointers that
// are set.
func bodyFields(v any) []string {
	rv := reflect.ValueOf(v).Elem()
	var set []string
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			set = append(set, rv.Type().Field(i).Name)
		}
	}
	return set
}

// requestOf is a request of category c with an empty body of its type (the
// Request field named c).
func requestOf(t *testing.T, c MessageCategory) *Request {
	t.Helper()
	req := &Request{Header: testHeader(c, "S1")}
	f := reflect.ValueOf(req).Elem().FieldByName(string(c))
	require.True(t, f.IsValid(), "Request has no %s body", c)
	f.Set(reflect.New(f.Type().Elem()))
	return req
}

// TestCategoryTable checks the table against the model: every body of
// Request has its category and every category its body, once.
func TestCategoryTable(t *testing.T) {
	seen := map[MessageCategory]bool{}
	for _, c := range categories {
		require.False(t, seen[c.name()], "%s twice in the table", c.name())
		seen[c.name()] = true
		require.Equal(t, c, categoryOf(c.name()))
		req := requestOf(t, c.name())
		require.Equal(t, []string{string(c.name())}, bodyFields(req))
		if c.traits().silent {
			continue
		}
		_, hasBody := reflect.TypeFor[Response]().FieldByName(string(c.name()))
		_, isTx := c.(transaction)
		require.False(t, isTx && !hasBody, "%s: a transaction's failure needs a body", c.name())
	}
	rt := reflect.TypeFor[Request]()
	for i := range rt.NumField() {
		if f := rt.Field(i); f.Type.Kind() == reflect.Pointer {
			require.True(t, seen[MessageCategory(f.Name)], "Request.%s has no category in the table", f.Name)
		}
	}
	require.Nil(t, categoryOf("CardAcquisition"))
}

// TestFailureBodyMatchesCategory builds the failure of every category the
// way the server does (txFailure for transactions, failureResponse for the
// rest) and checks that its body, if any, is the category's own, survives
// every codec, and names the POI transaction for a transaction.
func TestFailureBodyMatchesCategory(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	poiID := TransactionID{ID: "POI-1", TimeStamp: testEpoch}
	for _, c := range categories {
		name := c.name()
		t.Run(string(name), func(t *testing.T) {
			req := requestOf(t, name)
			resp := env.srv.txFailure(req, Errorf(Busy, "busy"), poiID)
			require.Equal(t, Failure, resp.Status.Result)
			require.Equal(t, name, resp.Header.Category)
			require.Equal(t, TypeResponse, resp.Header.Type)
			tc, isTx := c.(transaction)
			if !isTx {
				require.Empty(t, bodyFields(resp), "only a transaction's failure has a body")
				return
			}
			require.Equal(t, []string{string(name)}, bodyFields(resp), "the failure of a %s must carry a %sResponse", name, name)
			body := reflect.ValueOf(resp).Elem().FieldByName(string(name)).Elem()
			require.Equal(t, poiID, body.FieldByName("POITransactionID").Interface())

			// The body survives both 3.x codecs and, where served, v5.
			for _, codec := range []Codec{JSONCodec{}, XMLCodec{}} {
				b, err := codec.EncodeResponse(resp)
				require.NoError(t, err)
				back, err := codec.DecodeResponse(b)
				require.NoError(t, err)
				require.Equal(t, []string{string(name)}, bodyFields(back))
				require.Equal(t, poiID.ID, reflect.ValueOf(back).Elem().FieldByName(string(name)).Elem().FieldByName("POITransactionID").Interface().(TransactionID).ID)
			}
			if _, v5 := tc.(category5); v5 {
				codec := JSON5Codec{Now: func() time.Time { return testEpoch }}
				b, err := codec.EncodeResponse(resp)
				require.NoError(t, err)
				back, err := codec.DecodeResponse(b)
				require.NoError(t, err)
				require.Equal(t, name, back.Header.Category)
				require.Equal(t, []string{string(name)}, bodyFields(back))
			}
		})
	}
}

// TestFailureOfEveryAnsweredCategoryEncodes checks that a failure of every
// category that answers encodes, in 3.x and (where served) v5, as a
// response of that category.
func TestFailureOfEveryAnsweredCategoryEncodes(t *testing.T) {
	for _, c := range categories {
		name := c.name()
		if !answers(name) {
			continue
		}
		resp := failureResponse(testHeader(name, "S1"), Errorf(UnavailableService, "down"))
		for _, codec := range []Codec{JSONCodec{}, XMLCodec{}} {
			b, err := codec.EncodeResponse(resp)
			require.NoError(t, err, name)
			back, err := codec.DecodeResponse(b)
			require.NoError(t, err, name)
			require.Equal(t, name, back.Header.Category)
			require.Equal(t, resp.Status, back.Status, name)
		}
		if answers5(name) {
			codec := JSON5Codec{Now: func() time.Time { return testEpoch }}
			b, err := codec.EncodeResponse(resp)
			require.NoError(t, err, name)
			back, err := codec.DecodeResponse(b)
			require.NoError(t, err, name)
			require.Equal(t, name, back.Header.Category)
			require.Equal(t, resp.Status.Result, back.Status.Result, name)
		}
	}
}

// TestEveryCategoryHasGoldenTests holds a category added to the table to
// its golden requests (testdata/golden for 3.x, golden5 for v5).
func TestEveryCategoryHasGoldenTests(t *testing.T) {
	covered := map[MessageCategory]bool{}
	for _, g := range []struct {
		glob  string
		codec Codec
	}{
		{"golden/*.request.json", JSONCodec{}},
		{"golden/*.request.xml", XMLCodec{}},
		{"golden5/*.request.json", JSON5Codec{}},
	} {
		files, err := filepath.Glob(filepath.Join("testdata", g.glob))
		require.NoError(t, err)
		require.NotEmpty(t, files, g.glob)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			if req, err := g.codec.DecodeRequest(b); err == nil {
				covered[req.Header.Category] = true
			}
		}
	}
	for _, c := range categories {
		require.True(t, covered[c.name()], "no golden request of category %s in testdata/golden or testdata/golden5", c.name())
	}
}

// TestCallEngineRefusesNonTransaction: the engine runs Payments and
// Reversals only; a request of another category that reached the
// transaction path is refused, not taken for a Reversal.
func TestCallEngineRefusesNonTransaction(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	for i, c := range categories {
		if _, ok := c.(transaction); ok {
			continue
		}
		req := requestOf(t, c.name())
		req.Header.ServiceID = fmt.Sprintf("N%d", i)
		resp := env.srv.transact(testCtx(t), req)
		if !answers(c.name()) {
			continue // nothing to journal: an Event has no response
		}
		require.Equal(t, UnavailableService, resp.Status.ErrorCondition, "%s: %s", c.name(), resp.Status.AdditionalResponse)
		require.Contains(t, resp.Status.AdditionalResponse, "not a transaction", c.name())
	}
	require.Zero(t, env.engine.calls())
}

// TestDispatchEventClassIsAnEvent: a message of class Event is served as an
// EventNotification whatever its category says (the decoders never let the
// two disagree; dispatch does not rely on it).
func TestDispatchEventClassIsAnEvent(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	req := paymentReq("E1", "KB", 100)
	req.Header.Class = ClassEvent
	resp := env.srv.dispatch(testCtx(t), req)
	require.NotNil(t, resp)
	require.Equal(t, MessageFormat, resp.Status.ErrorCondition)
	require.Contains(t, resp.Status.AdditionalResponse, "EventNotification")
	require.Zero(t, env.engine.calls())
}
