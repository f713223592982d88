package webhook

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPost(t *testing.T) {
	var got struct {
		body       []byte
		ctype, hdr string
		method     string
	}
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.ctype, got.hdr, got.method = r.Header.Get("Content-Type"), r.Header.Get("X-Id"), r.Method
		w.WriteHeader(status)
		_, _ = w.Write(bytes.Repeat([]byte("x"), 3*MaxDrain)) // more than Post reads
	}))
	defer srv.Close()

	require.NoError(t, Post(t.Context(), srv.Client(), srv.URL, "application/json", []byte(`{"a":1}`), http.Header{"X-Id": {"7"}}))
	require.Equal(t, http.MethodPost, got.method)
	require.Equal(t, `{"a":1}`, string(got.body))
	require.Equal(t, "application/json", got.ctype)
	require.Equal(t, "7", got.hdr)

	for _, code := range []int{http.StatusMovedPermanently, http.StatusBadRequest, http.StatusBadGateway} {
		status = code
		err := Post(t.Context(), srv.Client(), srv.URL, "text/plain", nil, nil)
		var se *StatusError
		require.True(t, errors.As(err, &se), "HTTP %d is a failure", code)
		require.Equal(t, code, se.Code)
		require.Contains(t, err.Error(), "answered HTTP "+strconv.Itoa(code)+" "+http.StatusText(code))
	}

	srv.Close()
	err := Post(t.Context(), srv.Client(), srv.URL, "text/plain", nil, nil)
	require.Error(t, err)
	var se *StatusError
	require.False(t, errors.As(err, &se), "a transport error is not a status")
}
