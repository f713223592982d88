package sim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// issuer signs device tokens with RS256 and verifies them. Each token carries the
// issuer's generation; expireAll starts a new one, so every earlier token is refused
// at once while tokens issued afterwards are good.
type issuer struct {
	key *rsa.PrivateKey
	kid string
	ttl time.Duration
	now func() time.Time

	mu     sync.Mutex
	gen    int
	issued int
}

type deviceClaims struct {
	jwt.RegisteredClaims
	Serial   string `json:"serial_number,omitempty"`
	Model    string `json:"device_model,omitempty"`
	ClientID string `json:"azp,omitempty"`
	Scope    string `json:"scope,omitempty"`
	User     string `json:"preferred_username,omitempty"`
	Gen      int    `json:"gen"`
}

func newIssuer(ttl time.Duration, now func() time.Time) (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate token signing key: %w", err)
	}
	kidb := make([]byte, 8)
	_, _ = rand.Read(kidb)
	return &issuer{key: key, kid: hex.EncodeToString(kidb), ttl: ttl, now: now}, nil
}

const tokenIssuer = "https://auth.device.demo.ppaas.tech:9021/oauth2-mtls"

func (i *issuer) sign(c deviceClaims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = i.kid
	return t.SignedString(i.key)
}

// issue returns an access token and an id token for the device.
func (i *issuer) issue(d Device, user, scope string) (access, id string, err error) {
	now := i.now()
	i.mu.Lock()
	gen := i.gen
	i.issued++
	i.mu.Unlock()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	c := deviceClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   d.ClientID,
			Audience:  jwt.ClaimStrings{"ppaas-device-api"},
			ExpiresAt: jwt.NewNumericDate(now.Add(i.ttl)),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(jti),
		},
		Serial: d.Serial, Model: d.Model, ClientID: d.ClientID, Scope: scope, User: user, Gen: gen,
	}
	if access, err = i.sign(c); err != nil {
		return "", "", fmt.Errorf("sign access token: %w", err)
	}
	c.Audience = jwt.ClaimStrings{d.ClientID}
	c.ID += "-id"
	if id, err = i.sign(c); err != nil {
		return "", "", fmt.Errorf("sign id token: %w", err)
	}
	return access, id, nil
}

func (i *issuer) verify(raw string) (deviceClaims, error) {
	var c deviceClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) { return &i.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithTimeFunc(i.now),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience("ppaas-device-api"),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return deviceClaims{}, fmt.Errorf("invalid token: %w", err)
	}
	i.mu.Lock()
	gen := i.gen
	i.mu.Unlock()
	if c.Gen != gen {
		return deviceClaims{}, errors.New("invalid token: expired by the platform")
	}
	if c.Serial == "" {
		return deviceClaims{}, errors.New("invalid token: not a device token")
	}
	return c, nil
}

func (i *issuer) expireAll() {
	i.mu.Lock()
	i.gen++
	i.mu.Unlock()
}

func (i *issuer) jwks() map[string]any {
	pub := i.key.PublicKey
	return map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": i.kid,
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}}
}

// handleCredentials answers the merchant credentials of the device whose serial is
// asked, only to that device's own certificate.
func (p *PPaaS) handleCredentials(w http.ResponseWriter, r *http.Request) {
	peer, _ := DeviceFrom(r.Context())
	serial := r.URL.Query().Get("serial_number")
	if serial == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "serial_number query parameter is required")
		return
	}
	if serial != peer.Serial {
		writeOAuthError(w, http.StatusForbidden, "access_denied", "serial_number does not match the client certificate")
		return
	}
	m, err := p.merchantFor(peer)
	if err != nil {
		writeOAuthError(w, http.StatusForbidden, "access_denied", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, []merchant{m})
}

func (p *PPaaS) merchantFor(d Device) (merchant, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.merchant[d.Serial]; ok {
		if m.Revoked {
			return merchant{}, errors.New("device credentials revoked")
		}
		return m, nil
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	m := merchant{
		MerchantName: "firstname lastname",
		UserDomain:   "ppaasfr",
		ClientID:     "device-" + d.Serial,
		ClientSecret: base64.RawURLEncoding.EncodeToString(secret),
	}
	p.merchant[d.Serial] = m
	p.clientID[m.ClientID] = d.Serial
	return m, nil
}

// handleToken implements the client_credentials and password grants.
func (p *PPaaS) handleToken(w http.ResponseWriter, r *http.Request) {
	peer, _ := DeviceFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "form body expected")
		return
	}
	var (
		d     = Device{Serial: peer.Serial, Model: peer.Model}
		user  string
		scope = "openid email profile"
	)
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		if u, pw, ok := r.BasicAuth(); ok && id == "" {
			id, secret = u, pw
		}
		p.mu.Lock()
		serial, known := p.clientID[id]
		m := p.merchant[serial]
		p.mu.Unlock()
		if !known || m.Revoked || !constantTimeEqual(secret, m.ClientSecret) {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "invalid client credentials")
			return
		}
		if serial != peer.Serial {
			// The same answer as a wrong secret: telling them apart would
			// confirm a valid client id and secret to another device.
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "invalid client credentials")
			return
		}
		d.ClientID = id
	case "password":
		if r.PostForm.Get("client_id") != "ppaas-powered-app" {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "password grant is for client ppaas-powered-app")
			return
		}
		user = r.PostForm.Get("username")
		want, ok := p.cfg.Users[user]
		if !ok || !constantTimeEqual(r.PostForm.Get("password"), want) {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", "invalid user credentials")
			return
		}
		if s := r.PostForm.Get("scope"); s != "" {
			scope = s
		}
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "supported: client_credentials, password")
		return
	}
	access, id, err := p.issuer.issue(d, user, scope)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	resp := map[string]any{
		"access_token":       access,
		"token_type":         "Bearer",
		"expires_in":         int64(p.cfg.TokenTTL / time.Second),
		"refresh_expires_in": 0,
		"id_token":           id,
		"scope":              scope,
	}
	if p.cfg.TokenTTL < time.Second {
		resp["expires_in"] = 1
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

func (p *PPaaS) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.issuer.jwks())
}

// handleCountries is the resources API of the seed's first call.
func (p *PPaaS) handleCountries(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]string{
		{"code": "BG", "display": "Bulgaria"}, {"code": "MM", "display": "Myanmar"},
		{"code": "BI", "display": "Burundi"}, {"code": "FR", "display": "France"},
		{"code": "DE", "display": "Germany"}, {"code": "US", "display": "United States"},
	})
}

func (p *PPaaS) handleExpireTokens(w http.ResponseWriter, _ *http.Request) {
	p.issuer.expireAll()
	p.broker.sweep() // sessions live no longer than their tokens
	writeJSON(w, http.StatusOK, map[string]string{"status": "all tokens expired"})
}

// handleRevoke revokes (or, with ?restore=1, restores) a device's credentials.
func (p *PPaaS) handleRevoke(w http.ResponseWriter, r *http.Request) {
	serial := r.PathValue("serial")
	restore := r.URL.Query().Get("restore") == "1"
	p.mu.Lock()
	m, ok := p.merchant[serial]
	if ok {
		m.Revoked = !restore
		p.merchant[serial] = m
	}
	p.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown serial " + serial})
		return
	}
	p.broker.sweep()
	writeJSON(w, http.StatusOK, map[string]any{"serial": serial, "revoked": !restore})
}

// Stats are counters tests assert on.
type Stats struct {
	TokensIssued   int `json:"tokensIssued"`
	TokensRejected int `json:"tokensRejected"`
	Devices        int `json:"devices"`
}

// Stats returns the simulator's counters.
func (p *PPaaS) Stats() Stats {
	p.issuer.mu.Lock()
	issued := p.issuer.issued
	p.issuer.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{TokensIssued: issued, TokensRejected: p.rejected, Devices: len(p.merchant)}
}

func (p *PPaaS) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.Stats())
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
