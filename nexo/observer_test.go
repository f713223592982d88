package nexo

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type observed struct {
	category  MessageCategory
	result    Result
	condition ErrorCondition
}

type fakeObserver struct {
	mu  sync.Mutex
	got []observed
}

func (f *fakeObserver) ObserveRequest(c MessageCategory, r Result, cond ErrorCondition, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		panic("non-positive latency")
	}
	f.got = append(f.got, observed{c, r, cond})
}

func (f *fakeObserver) all() []observed {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]observed(nil), f.got...)
}

func TestObserverSeesEveryExchange(t *testing.T) {
	obs := &fakeObserver{}
	env := startServer(t, ServerConfig{}, &testEnv{obs: obs})
	c := env.client(JSONCodec{}, nil)
	ctx := testCtx(t)

	_, err := c.Do(ctx, &Request{Header: testHeader(CategoryDiagnosis, "D1"), Diagnosis: &DiagnosisRequest{}})
	require.NoError(t, err)
	other := testHeader(CategoryDiagnosis, "D2")
	other.POIID = "SOMEONE-ELSE"
	_, err = c.Do(ctx, &Request{Header: other, Diagnosis: &DiagnosisRequest{}})
	require.NoError(t, err)
	resp, err := http.Post(env.url, "application/json", bytes.NewReader([]byte(`{"nonsense":true}`)))
	require.NoError(t, err)
	resp.Body.Close()

	want := []observed{
		{CategoryDiagnosis, Success, ""},
		{CategoryDiagnosis, Failure, NotAllowed},
		{"", "Reject", MessageFormat},
	}
	// The answer is flushed to the client before the handler observes it
	// (serveNexo): the last observation may land just after the response.
	require.Eventually(t, func() bool { return len(obs.all()) >= len(want) }, 5*time.Second, time.Millisecond)
	require.Equal(t, want, obs.all())
}
