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
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// PoweredAppClientID is the client of the document's password grant.
const PoweredAppClientID = "ppaas-powered-app"

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
	// verified holds the claims of tokens whose signature has been checked,
	// so that a token presented again (every API call of a device until its
	// token is refreshed) is not RSA-verified again, as an API gateway caches
	// its token validations. A hit still passes every time, issuer, audience
	// and generation check; only the signature, a function of the token's
	// bytes and the key, is taken as known. Bounded by maxVerified: full, it
	// is emptied.
	verified    map[string]deviceClaims
	maxVerified int
	times       *jwt.Validator
}

// maxVerified bounds the verified-token cache: devices hold one access token
// each at a time (two across a refresh).
const maxVerified = 4096

type deviceClaims struct {
	jwt.RegisteredClaims
	Serial   string `json:"serial_number,omitempty"`
	Model    string `json:"device_model,omitempty"`
	ClientID string `json:"azp,omitempty"`
	Scope    string `json:"scope,omitempty"`
	User     string `json:"preferred_username,omitempty"`
	Gen      int    `json:"gen"`
	// Custom marks a device token of the demo custom-token flow: it was issued
	// to a merchant for a device id, not to a device certificate, so it is used
	// without one.
	Custom bool `json:"custom_token,omitempty"`
}

func newIssuer(ttl time.Duration, now func() time.Time) (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate token signing key: %w", err)
	}
	kidb := make([]byte, 8)
	_, _ = rand.Read(kidb)
	i := &issuer{key: key, kid: hex.EncodeToString(kidb), ttl: ttl, now: now,
		verified: make(map[string]deviceClaims), maxVerified: maxVerified}
	i.times = jwt.NewValidator(i.parserOptions()...)
	return i, nil
}

// parserOptions are the checks of a device access token besides its
// signature.
func (i *issuer) parserOptions() []jwt.ParserOption {
	return []jwt.ParserOption{
		jwt.WithTimeFunc(i.now),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience("ppaas-device-api"),
		jwt.WithExpirationRequired(),
	}
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
	i.mu.Lock()
	c, known := i.verified[raw]
	i.mu.Unlock()
	if known {
		if err := i.times.Validate(&c); err != nil {
			return deviceClaims{}, fmt.Errorf("invalid token: %w", err)
		}
	} else {
		_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) { return &i.key.PublicKey, nil },
			append(i.parserOptions(), jwt.WithValidMethods([]string{"RS256"}))...)
		if err != nil {
			return deviceClaims{}, fmt.Errorf("invalid token: %w", err)
		}
	}
	i.mu.Lock()
	gen := i.gen
	if !known {
		if len(i.verified) >= i.maxVerified {
			clear(i.verified)
		}
		i.verified[raw] = c
	}
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
	p.mu.Lock()
	list := append([]merchant{m}, p.moreCreds[peer.Serial]...)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
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
		for _, more := range p.moreCreds[serial] {
			if more.ClientID == id {
				m.ClientSecret = more.ClientSecret
			}
		}
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
		p.count(func(a *authCounters) { a.passwordGrants++ })
	case "refresh_token":
		c, ok := p.refreshGrant(w, r, PoweredAppClientID, peer)
		if !ok {
			return
		}
		user, scope = c.User, c.Scope
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "supported: client_credentials, password, refresh_token")
		return
	}
	access, id, err := p.issuer.issue(d, user, scope)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	if user != "" {
		// End-user mode: the document's response carries a refresh token.
		refresh, err := p.issuer.issueRefresh(deviceClaims{Serial: d.Serial, Model: d.Model, User: user, Scope: scope}, PoweredAppClientID, p.refreshTTL())
		if err != nil {
			writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
			return
		}
		p.writeSessionToken(w, access, id, refresh, scope)
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

// issue 13: the password grant's refresh token, the demo realm (merchant login
// and custom token), and the renew-secret knob.

// Audiences of the non-device tokens the simulator issues: a refresh token is
// never an access token, and a merchant token of the realm is not a device token.
const (
	refreshAudience = "ppaas-refresh"
	demoRealm       = "sandbox-ma"
	portalClientID  = "ppaas-portal"
)

// refreshTTL is the life of refresh tokens: the document's refresh_expires_in
// (900 s) against its expires_in (300 s), three access-token lives.
func (p *PPaaS) refreshTTL() time.Duration { return 3 * p.cfg.TokenTTL }

// issueRefresh returns a refresh token for the session of claims c (a device's
// password grant, or a merchant's realm login).
func (i *issuer) issueRefresh(c deviceClaims, client string, ttl time.Duration) (string, error) {
	now := i.now()
	i.mu.Lock()
	c.Gen = i.gen
	i.mu.Unlock()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	c.RegisteredClaims = jwt.RegisteredClaims{
		Issuer: tokenIssuer, Subject: c.Subject, Audience: jwt.ClaimStrings{refreshAudience, client},
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now),
		ID: hex.EncodeToString(jti),
	}
	return i.sign(c)
}

// verifyAudience checks a token of the simulator's for an audience other than
// the device API's (refresh tokens, merchant tokens).
func (i *issuer) verifyAudience(raw, aud string) (deviceClaims, error) {
	var c deviceClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return &i.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(i.now), jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(aud), jwt.WithExpirationRequired())
	if err != nil {
		return deviceClaims{}, fmt.Errorf("invalid token: %w", err)
	}
	i.mu.Lock()
	gen := i.gen
	i.mu.Unlock()
	if c.Gen != gen {
		return deviceClaims{}, errors.New("invalid token: expired by the platform")
	}
	return c, nil
}

// authCounters count grants by kind, for tests (the agent must use its refresh
// token rather than replay the password).
type authCounters struct {
	passwordGrants, refreshGrants, merchantLogins, customTokens, secretRenewals int
}

func (p *PPaaS) count(f func(*authCounters)) {
	p.mu.Lock()
	f(&p.authCount)
	p.mu.Unlock()
}

// AuthStats are the grant counters.
type AuthStats struct {
	PasswordGrants int `json:"passwordGrants"` // device password grants (ppaas-powered-app)
	RefreshGrants  int `json:"refreshGrants"`  // refresh_token grants, device and realm
	MerchantLogins int `json:"merchantLogins"` // password logins at the demo realm
	CustomTokens   int `json:"customTokens"`   // device tokens from custom-token
	SecretRenewals int `json:"secretRenewals"`
}

// AuthStats returns the grant counters.
func (p *PPaaS) AuthStats() AuthStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.authCount
	return AuthStats{PasswordGrants: c.passwordGrants, RefreshGrants: c.refreshGrants, MerchantLogins: c.merchantLogins,
		CustomTokens: c.customTokens, SecretRenewals: c.secretRenewals}
}

// authRoutes registers the demo realm's endpoints (no client certificate, as in
// the document's custom-token curl) and the renew-secret knob.
func (p *PPaaS) authRoutes() {
	p.mux.HandleFunc("POST /auth/realms/{realm}/protocol/openid-connect/token", p.handleRealmToken)
	p.mux.HandleFunc("POST /auth/realms/{realm}/custom-token", p.handleCustomToken)
	p.control.HandleFunc("POST /control/auth/renew-secret/{serial}", p.handleRenewSecret)
}

// refreshGrant answers grant_type=refresh_token for client: the refresh token
// must be the simulator's, unexpired, issued to that client and (for a device
// session) to the device on the connection.
func (p *PPaaS) refreshGrant(w http.ResponseWriter, r *http.Request, client string, peer Device) (deviceClaims, bool) {
	if r.PostForm.Get("client_id") != client {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "refresh_token grant is for client "+client)
		return deviceClaims{}, false
	}
	c, err := p.issuer.verifyAudience(r.PostForm.Get("refresh_token"), refreshAudience)
	if err == nil && !slicesContains(c.Audience, client) {
		err = errors.New("refresh token of another client")
	}
	if err == nil && c.Serial != peer.Serial {
		err = errors.New("refresh token of another device")
	}
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token: "+err.Error())
		return deviceClaims{}, false
	}
	p.count(func(a *authCounters) { a.refreshGrants++ })
	return c, true
}

func slicesContains(list jwt.ClaimStrings, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// writeSessionToken answers a token with its refresh token, as the document's
// password-grant and custom-token responses.
func (p *PPaaS) writeSessionToken(w http.ResponseWriter, access, id, refresh, scope string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":       access,
		"expires_in":         max(int64(p.cfg.TokenTTL/time.Second), 1),
		"refresh_expires_in": max(int64(p.refreshTTL()/time.Second), 1),
		"refresh_token":      refresh,
		"token_type":         "Bearer",
		"id_token":           id,
		"not-before-policy":  1609968533,
		"session_state":      uuid.NewString(),
		"scope":              scope,
	})
}

// handleRealmToken is the Keycloak token endpoint of the demo realm: the
// merchant logs in (password grant, client ppaas-portal, no OTP for the generic
// account) or refreshes the session. It answers a merchant token, not a device
// token.
func (p *PPaaS) handleRealmToken(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("realm") != demoRealm {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Realm does not exist"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "form body expected")
		return
	}
	var user string
	switch r.PostForm.Get("grant_type") {
	case "password":
		if r.PostForm.Get("client_id") != portalClientID {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Invalid client credentials")
			return
		}
		user = r.PostForm.Get("username")
		want, ok := p.cfg.Users[user]
		if !ok || !constantTimeEqual(r.PostForm.Get("password"), want) {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
			return
		}
		p.count(func(a *authCounters) { a.merchantLogins++ })
	case "refresh_token":
		c, ok := p.refreshGrant(w, r, portalClientID, Device{})
		if !ok {
			return
		}
		user = c.User
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "supported: password, refresh_token")
		return
	}
	now := p.issuer.now()
	c := deviceClaims{User: user, ClientID: portalClientID, Scope: "openid profile email"}
	c.RegisteredClaims = jwt.RegisteredClaims{
		Issuer: tokenIssuer, Subject: "merchant:" + user, Audience: jwt.ClaimStrings{demoRealm},
		ExpiresAt: jwt.NewNumericDate(now.Add(p.cfg.TokenTTL)), IssuedAt: jwt.NewNumericDate(now),
		ID: uuid.NewString(),
	}
	p.issuer.mu.Lock()
	c.Gen = p.issuer.gen
	p.issuer.mu.Unlock()
	access, err := p.issuer.sign(c)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	refresh, err := p.issuer.issueRefresh(deviceClaims{User: user}, portalClientID, p.refreshTTL())
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	p.writeSessionToken(w, access, access, refresh, "openid profile email")
}

// handleCustomToken is the document's "Retrieve custom token": a merchant token
// of the realm as bearer, form device_model, device_id (ingenico-{MODEL}-{SERIAL})
// and method, answered by a device token for that device.
func (p *PPaaS) handleCustomToken(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("realm") != demoRealm {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Realm does not exist"})
		return
	}
	raw, ok := bearer(r)
	if !ok {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "a merchant token is required")
		return
	}
	mc, err := p.issuer.verifyAudience(raw, demoRealm)
	if err != nil {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", err.Error())
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "form body expected (application/x-www-form-urlencoded)")
		return
	}
	model, id, method := r.PostForm.Get("device_model"), r.PostForm.Get("device_id"), r.PostForm.Get("method")
	serial, found := strings.CutPrefix(id, "ingenico-"+model+"-")
	switch {
	case model == "" || id == "" || method == "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "device_model, device_id and method are required")
		return
	case !found || serial == "" || strings.ContainsAny(serial, "/ "):
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "device_id must be ingenico-{device_model}-{serial}")
		return
	}
	d := Device{Serial: serial, Model: model}
	now := p.issuer.now()
	p.issuer.mu.Lock()
	gen := p.issuer.gen
	p.issuer.issued++
	p.issuer.mu.Unlock()
	c := deviceClaims{Serial: serial, Model: model, User: mc.User, Scope: "profile email", Gen: gen, Custom: true}
	c.RegisteredClaims = jwt.RegisteredClaims{
		Issuer: tokenIssuer, Subject: id, Audience: jwt.ClaimStrings{"ppaas-device-api"},
		ExpiresAt: jwt.NewNumericDate(now.Add(p.cfg.TokenTTL)), IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now), ID: uuid.NewString(),
	}
	access, err := p.issuer.sign(c)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	idc := c
	idc.Audience, idc.ID = jwt.ClaimStrings{portalClientID}, c.ID+"-id"
	idTok, err := p.issuer.sign(idc)
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	refresh, err := p.issuer.issueRefresh(deviceClaims{Serial: d.Serial, Model: d.Model, User: mc.User}, portalClientID, p.refreshTTL())
	if err != nil {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "token signing failed")
		return
	}
	p.count(func(a *authCounters) { a.customTokens++ })
	p.writeSessionToken(w, access, idTok, refresh, "profile email")
}

// RenewSecret renews a device's client secret, as the portal's RENEW button: the
// old secret is refused from now on, tokens already issued stay valid until they
// expire.
func (p *PPaaS) RenewSecret(serial string) error {
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.merchant[serial]
	if !ok {
		return fmt.Errorf("unknown serial %s (no credentials handed out yet)", serial)
	}
	m.ClientSecret = base64.RawURLEncoding.EncodeToString(secret)
	p.merchant[serial] = m
	p.authCount.secretRenewals++
	return nil
}

func (p *PPaaS) handleRenewSecret(w http.ResponseWriter, r *http.Request) {
	serial := r.PathValue("serial")
	if err := p.RenewSecret(serial); err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": serial, "renewed": true})
}

// AddMerchantCredentials makes the credentials endpoint list one more entry for
// serial (another merchant the terminal is registered for), with its own client
// id and secret, valid for the client_credentials grant of that device.
func (p *PPaaS) AddMerchantCredentials(serial, merchantName, userDomain string) error {
	if _, err := p.merchantFor(Device{Serial: serial}); err != nil {
		return err
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.moreCreds == nil {
		p.moreCreds = map[string][]merchant{}
	}
	m := merchant{
		MerchantName: merchantName, UserDomain: userDomain,
		ClientID:     fmt.Sprintf("device-%s-%d", serial, len(p.moreCreds[serial])+2),
		ClientSecret: base64.RawURLEncoding.EncodeToString(secret),
	}
	p.moreCreds[serial] = append(p.moreCreds[serial], m)
	p.clientID[m.ClientID] = serial
	return nil
}
