package agent

import (
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/qr"
)

// A 404 or 409 to a reversal says PPaaS is up and the advice not settled: it
// is the advice's own outcome (retried with its backoff), never an outage,
// which would pause the whole outbox behind it for as long as PPaaS keeps
// answering so. A definitive refusal is Rejected; anything else stays as is.
func TestClassifyReversalAnswers(t *testing.T) {
	for _, tc := range []struct {
		code               int
		notSettled, reject bool
	}{
		{http.StatusNotFound, true, false},
		{http.StatusConflict, true, false},
		{http.StatusBadRequest, false, true},
		{http.StatusForbidden, false, true},
		{http.StatusBadGateway, false, false},
	} {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			err := classify(&qr.APIError{StatusCode: tc.code})
			require.Equal(t, tc.notSettled, errors.Is(err, qr.ErrNotSettled), "%v", err)
			var rej *RejectedError
			require.Equal(t, tc.reject, errors.As(err, &rej), "%v", err)
		})
	}
}
