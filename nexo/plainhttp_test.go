package nexo

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A POS configured with http:// for the HTTPS Nexo port gets a plain answer
// saying so (net/http detects an HTTP request where a TLS handshake should
// be), never a Nexo decoding error; sim pos turns it into "this server speaks
// HTTPS".
func TestPlainHTTPOnTheTLSPortIsToldSo(t *testing.T) {
	srvTLS, _ := testTLS(t)
	env := startServer(t, ServerConfig{TLSConfig: srvTLS}, nil)
	plainURL := "http://" + strings.TrimPrefix(env.url, "https://")
	body, err := JSONCodec{}.EncodeRequest(diagnosisReq("P1"))
	require.NoError(t, err)
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Post(plainURL, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(b), "HTTP request to an HTTPS server")
	require.Zero(t, env.engine.calls(), "nothing reached the POI")
}
