package nexo

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExchangeSamePathAsNexo: a message served in process goes through the
// /nexo rules: a repeated v5 exchange is replayed from the journal (one
// engine call), MessageStatus and a 3.x TransactionStatus see it, an Abort
// has no answer, and an oversized body is rejected.
func TestExchangeSamePathAsNexo(t *testing.T) {
	env := startServer(t, ServerConfig{MaxRequestBytes: 4 << 10}, nil)
	ctx := testCtx(t)
	codec := JSON5Codec{Now: env.clock.Now}
	do := func(req *Request) *Response {
		t.Helper()
		body, err := codec.EncodeRequest(req)
		require.NoError(t, err)
		out := env.srv.Exchange(ctx, body)
		require.NotEmpty(t, out)
		resp, err := codec.DecodeResponse(out)
		require.NoError(t, err)
		return resp
	}
	first := do(paymentReq("X1", "KB", 1500))
	require.Equal(t, Success, first.Status.Result, first.Status.AdditionalResponse)
	again := do(paymentReq("X1", "KB", 1500))
	require.Equal(t, first.Payment, again.Payment)
	require.Equal(t, 1, env.engine.calls(), "a repeated exchange is not executed twice")

	st := do(status5Req("S1", "POS1", &MessageReference{Category: CategoryPayment, ServiceID: "X1"}))
	require.Equal(t, Success, st.Status.Result, st.Status.AdditionalResponse)
	require.Equal(t, first.Payment.POITransactionID, st.TransactionStatus.Repeated.Payment.POITransactionID)
	// The local 3.x path sees the same journal.
	resp, err := env.client(JSONCodec{}, nil).Do(ctx, status5Req("S2", "POS1", &MessageReference{Category: CategoryPayment, ServiceID: "X1"}))
	require.NoError(t, err)
	require.Equal(t, first.Payment.POITransactionID, resp.TransactionStatus.Repeated.Payment.POITransactionID)

	abort, err := codec.EncodeRequest(&Request{Header: testHeader(CategoryAbort, "A1"), Abort: &AbortRequest{MessageReference: MessageReference{Category: CategoryPayment, ServiceID: "NOPE"}, AbortReason: "test"}})
	require.NoError(t, err)
	require.Empty(t, env.srv.Exchange(ctx, abort))

	big := append([]byte(`{"SaleToPOIServiceRequest":{"x":"`), bytes.Repeat([]byte("a"), 5<<10)...)
	big = append(big, `"}}`...)
	_, m := decodeReply5(t, env.srv.Exchange(ctx, big))
	require.NotNil(t, m.Reject)
}
