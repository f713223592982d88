package nexo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBusyAnswersWithoutServing: Busy answers a v5 and a 3.x Payment with
// Result Failure / Busy of the right kind, runs nothing and journals
// nothing (the same exchange served afterwards is a new payment, not a
// replay), and rejects what it cannot read.
func TestBusyAnswersWithoutServing(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	ctx := testCtx(t)
	for _, codec := range []interface {
		EncodeRequest(*Request) ([]byte, error)
		DecodeResponse([]byte) (*Response, error)
	}{JSON5Codec{Now: env.clock.Now}, JSONCodec{}, XMLCodec{}} {
		body, err := codec.EncodeRequest(paymentReq("B1", "KB", 700))
		require.NoError(t, err)
		resp, err := codec.DecodeResponse(env.srv.Busy(body, "too many requests in flight"))
		require.NoError(t, err)
		require.Equal(t, CategoryPayment, resp.Header.Category)
		require.Equal(t, Failure, resp.Status.Result)
		require.Equal(t, Busy, resp.Status.ErrorCondition)
		require.Contains(t, resp.Status.AdditionalResponse, "too many requests in flight")
	}
	require.Zero(t, env.engine.calls())
	body, err := JSON5Codec{Now: env.clock.Now}.EncodeRequest(paymentReq("B1", "KB", 700))
	require.NoError(t, err)
	resp, err := JSON5Codec{Now: env.clock.Now}.DecodeResponse(env.srv.Exchange(ctx, body))
	require.NoError(t, err)
	require.Equal(t, Success, resp.Status.Result, "served for real once capacity is back")
	require.Equal(t, 1, env.engine.calls())

	_, m := decodeReply5(t, env.srv.Busy([]byte(`{"SaleToPOIServiceRequest":{"x":1}}`), "busy"))
	require.NotNil(t, m.Reject)
}
