package agent_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
)

// The demo defaults are the PPaaS document's two auth URLs, verbatim; the deprecated
// auth_url still works as a shorthand, and an explicit URL always wins.
func TestResolvePlatformURLs(t *testing.T) {
	c := agent.DefaultConfig().Resolve()
	require.Equal(t, "https://auth.demo.ppaas.tech/oauth2-mtls/v1/merchants-credentials", c.CredentialsURL)
	require.Equal(t, "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token", c.TokenURL)
	require.Equal(t, "https://api.demo.ppaas.tech:9021", c.APIURL)
	require.Empty(t, c.MQTTURL)

	c = agent.DefaultConfig()
	c.AuthURL = "https://127.0.0.1:9021/"
	c = c.Resolve()
	require.Equal(t, "https://127.0.0.1:9021/oauth2-mtls/v1/merchants-credentials", c.CredentialsURL)
	require.Equal(t, "https://127.0.0.1:9021/oauth2-mtls/v1/token", c.TokenURL)

	c = agent.DefaultConfig()
	c.Env, c.TokenURL = agent.EnvIND, "https://token.example.test:9021/t"
	c = c.Resolve()
	require.Equal(t, "https://token.example.test:9021/t", c.TokenURL)
	require.Equal(t, "https://api.ind.ppaas.com/oauth2-mtls/v1/merchants-credentials", c.CredentialsURL)

	for name, env := range agent.Environments() {
		require.Equal(t, name, env.Name)
		require.NotEmpty(t, env.Assumed, "%s: every preset says which URLs are assumptions", name)
		require.NotEmpty(t, env.CredentialsURL)
		require.NotEmpty(t, env.TokenURL)
		require.NotEmpty(t, env.APIURL)
	}
}

// The demo custom token: its endpoints and API host as the document writes them,
// no device certificate needed (ca empty: system roots), serial and model
// required; outside demo it is refused.
func TestCustomTokenConfig(t *testing.T) {
	base := func() agent.Config {
		c := agent.DefaultConfig()
		c.Grant, c.Username, c.Password = agent.GrantDemoCustomToken, "merchant", "@Welcome123"
		c.Serial, c.Model = "2097CD800007", "DX8000"
		c.Cert, c.Key, c.CA = "", "", ""
		return c
	}
	c := base().Resolve()
	require.NoError(t, c.Validate())
	require.Equal(t, "https://auth.demo.ppaas.tech/auth/realms/sandbox-ma/protocol/openid-connect/token", c.MerchantTokenURL)
	require.Equal(t, "https://auth.demo.ppaas.tech/auth/realms/sandbox-ma/custom-token", c.CustomTokenURL)
	require.Equal(t, "https://api.demo.ppaas.tech", c.APIURL)
	require.Equal(t, "ppaas-portal", c.MerchantClientID)
	require.Equal(t, "[api, device_flow]", c.DeviceMethod)

	c = base()
	c.Serial, c.Model, c.Password = "", "", ""
	err := c.Validate()
	require.ErrorContains(t, err, "config serial")
	require.ErrorContains(t, err, "config model")
	require.ErrorContains(t, err, "config password")

	c = base()
	c.Env = agent.EnvEUR
	require.ErrorContains(t, c.Validate(), "demo-custom-token is for the demo environment")

	// Client credentials still need the device certificate.
	c = agent.DefaultConfig()
	c.Cert = ""
	require.ErrorContains(t, c.Validate(), "config cert")
}
