package agent

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/termagent/termagent/mtls"
)

// Grant modes (config key grant).
const (
	// GrantClientCredentials is machine-to-machine mode: merchant credentials by
	// serial number, then the client_credentials grant, both over mutual TLS.
	GrantClientCredentials = "client_credentials"
	// GrantPassword is end-user mode: the password grant with ppaas-powered-app,
	// then its refresh token until refresh_expires_in passes.
	GrantPassword = "password"
	// GrantDemoCustomToken is the document's demo-only custom token: a merchant
	// token from the realm sandbox-ma exchanged for a device token, with no
	// device certificate.
	GrantDemoCustomToken = "demo-custom-token"
)

// Environment names (config key env).
const (
	EnvDemo = "demo"
	EnvNAR  = "nar"
	EnvIND  = "ind"
	EnvEUR  = "eur"
)

// Environment is a preset of platform URLs. Every value is a default: a URL set
// in the file, the environment or a flag wins.
type Environment struct {
	Name           string
	CredentialsURL string
	TokenURL       string
	APIURL         string // device API over mutual TLS
	// Demo custom-token mode only (the document gives these for demo only).
	MerchantTokenURL string
	CustomTokenURL   string
	CustomAPIURL     string // API of custom-token mode: no client certificate
	// Assumed names the URLs whose host or port the PPaaS document does not give
	// for this environment; they are to be confirmed with Ingenico.
	Assumed []string
}

// Environments are the presets from the PPaaS document's "Environment and portal"
// table and its demo examples.
//
// From the document, verbatim: the demo credentials and token URLs, the demo
// realm's merchant token and custom-token URLs, the demo API host of the
// custom-token example (https://api.demo.ppaas.tech), and each environment's
// "Main API URL" and "Security" hosts. The document lists api.ind.ppaas.com and
// api.eur.ppaas.com in the Security column for India and Europe; they are used as
// written.
//
// Assumptions (marked in Assumed): the device API on port 9021 of the main API
// host (the document says only that devices reach the API gateway on 9021), and
// outside demo the credentials and token paths and the token's port, copied
// from the demo URLs. No environment has an MQTT broker in the document: mqtt_url
// is empty unless configured.
func Environments() map[string]Environment {
	region := func(name, api, security string) Environment {
		return Environment{
			Name:           name,
			CredentialsURL: "https://" + security + mtls.CredentialsPath,
			TokenURL:       "https://" + security + ":9021" + mtls.TokenPath,
			APIURL:         "https://" + api + ":9021",
			Assumed:        []string{"credentials_url", "token_url", "api_url"},
		}
	}
	return map[string]Environment{
		EnvDemo: {
			Name:             EnvDemo,
			CredentialsURL:   "https://auth.demo.ppaas.tech/oauth2-mtls/v1/merchants-credentials",
			TokenURL:         "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token",
			APIURL:           "https://api.demo.ppaas.tech:9021",
			MerchantTokenURL: "https://auth.demo.ppaas.tech/auth/realms/sandbox-ma/protocol/openid-connect/token",
			CustomTokenURL:   "https://auth.demo.ppaas.tech/auth/realms/sandbox-ma/custom-token",
			CustomAPIURL:     "https://api.demo.ppaas.tech",
			Assumed:          []string{"api_url"},
		},
		EnvNAR: region(EnvNAR, "api.nar.ppaas.com", "auth.nar.ppaas.com"),
		EnvIND: region(EnvIND, "api.ind.ppaas.com", "api.ind.ppaas.com"),
		EnvEUR: region(EnvEUR, "api.eur.ppaas.com", "api.eur.ppaas.com"),
	}
}

func envNames() []string {
	names := []string{}
	for n := range Environments() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Resolve fills the platform URLs left empty: first from the deprecated auth_url
// shorthand, then from the env preset. It changes nothing that was set, so every
// preset value is overridable; an unknown env is left for Validate to report.
func (c Config) Resolve() Config {
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	if base := strings.TrimRight(c.AuthURL, "/"); base != "" {
		fill(&c.CredentialsURL, base+mtls.CredentialsPath)
		fill(&c.TokenURL, base+mtls.TokenPath)
	}
	env, ok := Environments()[c.Env]
	if !ok {
		return c
	}
	fill(&c.CredentialsURL, env.CredentialsURL)
	fill(&c.TokenURL, env.TokenURL)
	if c.Grant == GrantDemoCustomToken {
		fill(&c.APIURL, env.CustomAPIURL)
		fill(&c.MerchantTokenURL, env.MerchantTokenURL)
		fill(&c.CustomTokenURL, env.CustomTokenURL)
	} else {
		fill(&c.APIURL, env.APIURL)
	}
	return c
}

// validatePlatform checks the endpoints and the grant mode of a resolved
// configuration.
func (c Config) validatePlatform() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if _, ok := Environments()[c.Env]; !ok {
		bad("env", "must be one of %s, got %q", strings.Join(envNames(), ", "), c.Env)
	}
	urls := []struct{ field, value string }{{"api_url", c.APIURL}}
	if c.AuthURL != "" {
		urls = append(urls, struct{ field, value string }{"auth_url", c.AuthURL})
	}
	switch c.Grant {
	case GrantClientCredentials:
		urls = append(urls, struct{ field, value string }{"credentials_url", c.CredentialsURL}, struct{ field, value string }{"token_url", c.TokenURL})
	case GrantPassword:
		urls = append(urls, struct{ field, value string }{"token_url", c.TokenURL})
	case GrantDemoCustomToken:
		if c.MerchantTokenURL == "" || c.CustomTokenURL == "" {
			bad("grant", "demo-custom-token is for the demo environment (env demo), where the PPaaS document gives its endpoints; or set merchant_token_url and custom_token_url")
		}
		urls = append(urls, struct{ field, value string }{"merchant_token_url", c.MerchantTokenURL}, struct{ field, value string }{"custom_token_url", c.CustomTokenURL})
		if c.Serial == "" {
			bad("serial", "is required with grant=demo-custom-token (no device certificate to read it from)")
		}
		if c.Model == "" {
			bad("model", "is required with grant=demo-custom-token (device_id is ingenico-{MODEL}-{SERIAL})")
		}
		if c.MerchantClientID == "" {
			bad("merchant_client_id", "is required with grant=demo-custom-token")
		}
		if c.DeviceMethod == "" {
			bad("device_method", "is required with grant=demo-custom-token")
		}
	default:
		bad("grant", "must be %s, %s or %s, got %q", GrantClientCredentials, GrantPassword, GrantDemoCustomToken, c.Grant)
	}
	if c.Grant == GrantPassword || c.Grant == GrantDemoCustomToken {
		if c.Username == "" {
			bad("username", "is required with grant=%s", c.Grant)
		}
		if c.Password == "" {
			bad("password", "is required with grant=%s (set %s)", c.Grant, envName("password"))
		}
	}
	for _, u := range urls {
		pu, err := url.Parse(u.value)
		switch {
		case u.value == "":
			bad(u.field, "is required")
		case err != nil:
			bad(u.field, "%v", err)
		case pu.Scheme != "https" || pu.Host == "":
			bad(u.field, "must be an https:// URL with a host, got %q", u.value)
		}
	}
	switch {
	case c.PollFirst < 10*time.Millisecond:
		bad("poll_first", "must be at least 10ms, got %s", c.PollFirst)
	case c.PollFirst > c.PollMax && c.PollMax != DefaultConfig().PollMax:
		bad("poll_max", "must be at least poll_first (%s), got %s", c.PollFirst, c.PollMax)
	case c.PollFirst > c.PollMax:
		bad("poll_first", "must be at most poll_max (%s), got %s", c.PollMax, c.PollFirst)
	}
	if c.PollMax > 10*time.Minute {
		bad("poll_max", "must be at most 10m, got %s", c.PollMax)
	}
	return errs
}

// usesClientCertificate reports whether the grant authenticates the device with
// its certificate (every mode but the demo custom token).
func (c Config) usesClientCertificate() bool { return c.Grant != GrantDemoCustomToken }
