package mtls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Paths of the PPaaS device authentication endpoints, as the PPaaS document
// writes them (merchant credentials on the auth host, the token on the device
// auth host, port 9021, both mutual TLS).
const (
	CredentialsPath = "/oauth2-mtls/v1/merchants-credentials"
	TokenPath       = "/oauth2-mtls/v1/token"
	// PoweredAppClientID is the client of the password grant (end-user mode).
	PoweredAppClientID = "ppaas-powered-app"
)

// Grant selects how the device obtains its token.
type Grant struct {
	// Password switches from machine-to-machine mode (merchant credentials by serial,
	// then client_credentials) to end-user mode (password grant with
	// client_id=ppaas-powered-app, then its refresh token while it lasts).
	Password bool
	// CustomToken switches to the document's demo-only custom token: a merchant
	// token (Username, Secret) from the Keycloak realm, exchanged for a device
	// token. Nil for the other modes.
	CustomToken *CustomToken
	Username    string
	Secret      string // the end user's (or merchant's) password; kept in memory only
	Scope       string // default "openid profile email"
	// UserDomain chooses the merchant credentials entry when the platform returns
	// several for the serial; with several and no UserDomain, authentication fails
	// with a *CredentialsChoiceError naming them.
	UserDomain string
}

// CustomToken configures the demo custom-token flow of the PPaaS document
// ("Trigger a call as a terminal"): the merchant token from the realm's
// openid-connect token endpoint, then POST custom-token with the device's model,
// id and method, answered by a device token.
type CustomToken struct {
	MerchantTokenURL string // …/auth/realms/sandbox-ma/protocol/openid-connect/token
	ClientID         string // the realm client of the merchant login, "ppaas-portal"
	URL              string // …/auth/realms/sandbox-ma/custom-token
	DeviceModel      string // e.g. DX8000
	DeviceID         string // ingenico-{MODEL}-{SERIAL}
	Method           string // the document's "[api, device_flow]"
}

// DeviceID is the device id of the custom-token request: ingenico-{MODEL}-{SERIAL}.
func DeviceID(model, serial string) string { return "ingenico-" + model + "-" + serial }

// AuthConfig configures an Authenticator.
type AuthConfig struct {
	// CredentialsURL and TokenURL are the two endpoints of machine-to-machine mode
	// (the password grant uses TokenURL only). When empty they are BaseURL plus
	// CredentialsPath and TokenPath.
	CredentialsURL string
	TokenURL       string
	BaseURL        string       // shorthand: one https://auth-host:9021 for both
	Serial         string       // the device serial number, as in its certificate
	Client         *http.Client // an mTLS client (DeviceTLS.Config); deadlines come from contexts
	Grant          Grant
	// RefreshAt is the fraction of a token's life after which it is refreshed (2/3).
	RefreshAt float64
	// MinBackoff and MaxBackoff bound the retry delay after failures (1 s, 5 min);
	// each delay is drawn with full jitter.
	MinBackoff, MaxBackoff time.Duration
	Clock                  *Clock
	Logger                 *slog.Logger
}

// Token is a device access token with its locally computed expiry.
type Token struct {
	Access    string
	IDToken   string
	Scope     string
	Obtained  time.Time     // local time
	Lifetime  time.Duration // from the JWT exp (or expires_in) against the server's clock
	Expiry    time.Time     // local time after which the token is not used
	RefreshAt time.Time     // local time at which the background refresh renews it
}

// LogValue keeps the token itself out of logs.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expiry", t.Expiry), slog.Duration("lifetime", t.Lifetime))
}

// Error is a failure answered by the PPaaS authorization server.
type Error struct {
	Op          string // what was being done
	Status      int
	Code        string // OAuth2 error code, e.g. invalid_client
	Description string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// ErrBackoff is returned (wrapped with the last failure) while the authenticator
// waits before its next attempt, so callers fail fast instead of piling requests on
// a platform that is down.
var ErrBackoff = errors.New("device authentication backing off")

// Authenticator obtains and caches the device token. Token is safe for concurrent
// use; at most one refresh is in flight and concurrent callers share it. Run keeps
// the token fresh in the background.
type Authenticator struct {
	cfg AuthConfig
	log *slog.Logger

	mu          sync.Mutex
	tok         *Token
	creds       *merchantCredentials
	inflight    chan struct{} // closed when the refresh in flight ends
	lastErr     error
	failures    int
	nextAttempt time.Time
	kick        chan struct{}
	refreshes   int
	// session is the refresh token of the password grant; merchant is the
	// merchant's token and refresh token in custom-token mode.
	session  oauthSession
	merchant oauthSession
}

// oauthSession is a token with its refresh token, each with its local expiry.
type oauthSession struct {
	access, refresh             string
	accessExpiry, refreshExpiry time.Time
	grants                      int // grants of this session answered with a refresh token
}

func (s oauthSession) refreshable(now time.Time) bool {
	return s.refresh != "" && now.Before(s.refreshExpiry)
}

type merchantCredentials struct {
	MerchantName string `json:"merchantName"`
	UserDomain   string `json:"userDomain"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
}

// LogValue keeps the secret out of logs.
func (c merchantCredentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("clientId", c.ClientID), slog.String("merchant", c.MerchantName))
}

type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	Scope            string `json:"scope"`
}

// CredentialsChoiceError is returned when the platform lists several merchant
// credentials for the serial and none (or more than one) matches the configured
// user domain. Retrying cannot help: the configuration must say which.
type CredentialsChoiceError struct {
	Serial     string
	UserDomain string   // the configured one, empty if none
	Entries    []string // "userDomain (merchantName)" of each entry
}

func (e *CredentialsChoiceError) Error() string {
	if e.UserDomain == "" {
		return fmt.Sprintf("merchant credentials: %d entries for serial %s (%s); set user_domain to choose one",
			len(e.Entries), e.Serial, strings.Join(e.Entries, ", "))
	}
	return fmt.Sprintf("merchant credentials: user_domain %q does not select exactly one of the %d entries for serial %s (%s)",
		e.UserDomain, len(e.Entries), e.Serial, strings.Join(e.Entries, ", "))
}

// NewAuthenticator checks the configuration and returns an Authenticator with no
// token yet.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if base := strings.TrimRight(cfg.BaseURL, "/"); base != "" {
		if cfg.CredentialsURL == "" {
			cfg.CredentialsURL = base + CredentialsPath
		}
		if cfg.TokenURL == "" {
			cfg.TokenURL = base + TokenPath
		}
	}
	g := cfg.Grant
	urls := map[string]string{}
	switch {
	case g.CustomToken != nil:
		ct := g.CustomToken
		urls["merchant token URL"], urls["custom token URL"] = ct.MerchantTokenURL, ct.URL
		if ct.ClientID == "" || ct.DeviceModel == "" || ct.DeviceID == "" || ct.Method == "" {
			return nil, errors.New("auth: custom token needs a client id, device model, device id and method")
		}
	case g.Password:
		urls["token URL"] = cfg.TokenURL
	default:
		urls["credentials URL"], urls["token URL"] = cfg.CredentialsURL, cfg.TokenURL
	}
	for name, u := range urls {
		if u == "" {
			return nil, fmt.Errorf("auth: %s is empty", name)
		}
		if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" {
			return nil, fmt.Errorf("auth: %s %q is not an https URL", name, u)
		}
	}
	if cfg.Client == nil {
		return nil, errors.New("auth: no HTTP client")
	}
	// Whatever client it is given, a redirect is never followed: the form the
	// client would post again carries the client secret or the password. The
	// client is copied, not changed.
	hc := *cfg.Client
	hc.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		status := 0
		if req.Response != nil {
			status = req.Response.StatusCode
		}
		return redirectError(status, req.URL.Host)
	}
	cfg.Client = &hc
	if !g.Password && g.CustomToken == nil && cfg.Serial == "" {
		return nil, errors.New("auth: serial number is empty")
	}
	if (g.Password || g.CustomToken != nil) && (g.Username == "" || g.Secret == "") {
		return nil, errors.New("auth: password and custom-token grants need a username and a password")
	}
	if cfg.RefreshAt <= 0 || cfg.RefreshAt >= 1 {
		cfg.RefreshAt = 2.0 / 3
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = NewClock(time.Time{}, nil)
	}
	if cfg.Grant.Scope == "" {
		cfg.Grant.Scope = "openid profile email"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{cfg: cfg, log: log, kick: make(chan struct{}, 1)}, nil
}

// Token returns a valid access token, fetching one when none is cached or the cached
// one is at the end of its life. Concurrent callers share a single refresh.
func (a *Authenticator) Token(ctx context.Context) (string, error) {
	t, err := a.current(ctx, false)
	if err != nil {
		return "", err
	}
	return t.Access, nil
}

// Current is like Token but returns the whole Token.
func (a *Authenticator) Current(ctx context.Context) (Token, error) { return a.current(ctx, false) }

// current returns the cached token or refreshes it. With force it refreshes even a
// valid token (the background renewal); the old token stays in service for other
// callers meanwhile.
func (a *Authenticator) current(ctx context.Context, force bool) (Token, error) {
	for {
		a.mu.Lock()
		now := a.cfg.Clock.Local()
		if !force && a.tok != nil && now.Before(a.tok.Expiry) {
			t := *a.tok
			a.mu.Unlock()
			return t, nil
		}
		if a.inflight == nil && now.Before(a.nextAttempt) {
			err := fmt.Errorf("%w until %s: %w", ErrBackoff, a.nextAttempt.Format(time.RFC3339), a.lastErr)
			a.mu.Unlock()
			return Token{}, err
		}
		if ch := a.inflight; ch != nil {
			a.mu.Unlock()
			select {
			case <-ch:
				force = false // the shared refresh was ours too
				continue
			case <-ctx.Done():
				return Token{}, fmt.Errorf("wait for device token: %w", context.Cause(ctx))
			}
		}
		ch := make(chan struct{})
		a.inflight = ch
		a.mu.Unlock()

		t, err := a.refresh(ctx)
		a.finish(t, err)
		close(ch)
		if err != nil {
			return Token{}, err
		}
		return t, nil
	}
}

func (a *Authenticator) finish(t Token, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight = nil
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return // the caller gave up; that says nothing about the platform
		}
		a.failures++
		a.lastErr = err
		a.nextAttempt = a.cfg.Clock.Local().Add(a.backoff(a.failures))
		a.log.Warn("device authentication failed", "err", err, "failures", a.failures, "retry_at", a.nextAttempt)
		return
	}
	a.tok = &t
	a.failures, a.lastErr, a.nextAttempt = 0, nil, time.Time{}
	a.refreshes++
	a.log.Info("device authenticated", "token", t, "refresh_at", t.RefreshAt)
}

// backoff is exponential with full jitter, capped.
func (a *Authenticator) backoff(failures int) time.Duration {
	d := a.cfg.MinBackoff
	for i := 1; i < failures && d < a.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, a.cfg.MaxBackoff)
	return a.cfg.MinBackoff/2 + rand.N(d)
}

// Invalidate drops the cached token if it is still the given one (a 401 proved it
// bad); the next Token call authenticates again.
func (a *Authenticator) Invalidate(token string) {
	a.mu.Lock()
	if a.tok != nil && a.tok.Access == token {
		a.tok = nil
		a.log.Info("device token rejected by the platform; re-authenticating")
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Stats reports refresh and failure counts for metrics.
func (a *Authenticator) Stats() (refreshes, consecutiveFailures int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshes, a.failures
}

// Run keeps the token fresh until ctx ends: it refreshes at RefreshAt of each
// token's life, and after a failure retries with capped, jittered backoff.
func (a *Authenticator) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-a.kick:
		}
		a.mu.Lock()
		now := a.cfg.Clock.Local()
		due := a.tok == nil || !now.Before(a.tok.RefreshAt)
		if due && a.inflight == nil && !now.Before(a.nextAttempt) {
			a.mu.Unlock()
			_, _ = a.current(ctx, true) // failures are logged and scheduled by finish
			a.mu.Lock()
		}
		next := a.nextAttempt
		if a.tok != nil {
			next = a.tok.RefreshAt
		}
		wait := max(next.Sub(a.cfg.Clock.Local()), 10*time.Millisecond)
		a.mu.Unlock()
		timer.Reset(wait)
	}
}

func (a *Authenticator) refresh(ctx context.Context) (Token, error) {
	switch {
	case a.cfg.Grant.CustomToken != nil:
		return a.customToken(ctx)
	case a.cfg.Grant.Password:
		g := a.cfg.Grant
		t, _, err := a.sessionToken(ctx, &a.session, a.cfg.TokenURL, PoweredAppClientID, url.Values{
			"grant_type": {"password"},
			"client_id":  {PoweredAppClientID},
			"username":   {g.Username},
			"password":   {g.Secret},
			"scope":      {g.Scope},
		})
		return t, err
	}
	for attempt := 0; ; attempt++ {
		creds, err := a.credentials(ctx)
		if err != nil {
			return Token{}, err
		}
		form := url.Values{
			"grant_type":    {"client_credentials"},
			"client_id":     {creds.ClientID},
			"client_secret": {creds.ClientSecret},
		}
		t, _, err := a.requestToken(ctx, a.cfg.TokenURL, form)
		var ae *Error
		if attempt == 0 && errors.As(err, &ae) && ae.Code == "invalid_client" {
			// The secret may have been renewed on the portal: fetch it again, once.
			a.mu.Lock()
			a.creds = nil
			a.mu.Unlock()
			continue
		}
		return t, err
	}
}

func (a *Authenticator) credentials(ctx context.Context) (merchantCredentials, error) {
	a.mu.Lock()
	c := a.creds
	a.mu.Unlock()
	if c != nil {
		return *c, nil
	}
	u := a.cfg.CredentialsURL + "?serial_number=" + url.QueryEscape(a.cfg.Serial)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return merchantCredentials{}, fmt.Errorf("fetch merchant credentials: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var list []merchantCredentials
	if err := a.do(req, "fetch merchant credentials", &list); err != nil {
		return merchantCredentials{}, err
	}
	chosen, err := chooseCredentials(list, a.cfg.Grant.UserDomain, a.cfg.Serial)
	if err != nil {
		return merchantCredentials{}, err
	}
	a.mu.Lock()
	a.creds = &chosen
	a.mu.Unlock()
	a.log.Info("merchant credentials obtained", "credentials", chosen, "entries", len(list))
	return chosen, nil
}

// chooseCredentials picks the entry of the merchant credentials list: the only
// one, or the one whose userDomain is the configured one. Several entries and no
// (or no matching) user domain is an error naming them, never a silent first pick.
func chooseCredentials(list []merchantCredentials, userDomain, serial string) (merchantCredentials, error) {
	var usable []merchantCredentials
	for _, c := range list {
		if c.ClientID != "" && c.ClientSecret != "" {
			usable = append(usable, c)
		}
	}
	if len(usable) == 0 {
		return merchantCredentials{}, fmt.Errorf("fetch merchant credentials: no credentials for serial %s", serial)
	}
	if userDomain == "" && len(usable) == 1 {
		return usable[0], nil
	}
	var match []merchantCredentials
	for _, c := range usable {
		if userDomain != "" && strings.EqualFold(c.UserDomain, userDomain) {
			match = append(match, c)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	names := make([]string, len(usable))
	for i, c := range usable {
		names[i] = fmt.Sprintf("%q (%s)", c.UserDomain, c.MerchantName)
	}
	return merchantCredentials{}, &CredentialsChoiceError{Serial: serial, UserDomain: userDomain, Entries: names}
}

// sessionToken obtains a token from a password-grant session: with the session's
// refresh token while it lasts, otherwise (or when the platform refuses the
// refresh token) with the password grant in form.
func (a *Authenticator) sessionToken(ctx context.Context, s *oauthSession, tokenURL, clientID string, form url.Values) (Token, oauthSession, error) {
	a.mu.Lock()
	cur := *s
	a.mu.Unlock()
	if cur.refreshable(a.cfg.Clock.Local()) {
		t, next, err := a.requestToken(ctx, tokenURL, url.Values{
			"grant_type":    {"refresh_token"},
			"client_id":     {clientID},
			"refresh_token": {cur.refresh},
		})
		var ae *Error
		switch {
		case err == nil:
			next.grants = cur.grants + 1
			a.mu.Lock()
			*s = next
			a.mu.Unlock()
			return t, next, nil
		case errors.As(err, &ae) && ae.Status < 500:
			// The session ended at the platform (logout, restart): log in again.
			a.log.Info("refresh token refused; using the password grant", "err", err)
		default:
			return Token{}, oauthSession{}, err
		}
	}
	t, next, err := a.requestToken(ctx, tokenURL, form)
	if err != nil {
		return Token{}, oauthSession{}, err
	}
	a.mu.Lock()
	*s = next
	a.mu.Unlock()
	return t, next, nil
}

// customToken is the document's demo flow: a merchant token from the realm
// (reused, refreshed, or obtained with the merchant's password), then the
// custom-token call with the device's model, id and method.
func (a *Authenticator) customToken(ctx context.Context) (Token, error) {
	g := a.cfg.Grant
	ct := g.CustomToken
	a.mu.Lock()
	m := a.merchant
	a.mu.Unlock()
	merchantToken := m.access
	if merchantToken == "" || !a.cfg.Clock.Local().Before(m.accessExpiry) {
		_, s, err := a.sessionToken(ctx, &a.merchant, ct.MerchantTokenURL, ct.ClientID, url.Values{
			"grant_type": {"password"},
			"client_id":  {ct.ClientID},
			"username":   {g.Username},
			"password":   {g.Secret},
			"scope":      {g.Scope},
		})
		if err != nil {
			return Token{}, fmt.Errorf("merchant token: %w", err)
		}
		merchantToken = s.access
	}
	form := url.Values{"device_model": {ct.DeviceModel}, "device_id": {ct.DeviceID}, "method": {ct.Method}}
	t, _, err := a.post(ctx, ct.URL, "request custom device token", form, merchantToken)
	var ae *Error
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		// The merchant token was refused before its time: forget it, so the next
		// attempt logs in again.
		a.mu.Lock()
		a.merchant = oauthSession{}
		a.mu.Unlock()
	}
	return t, err
}

func (a *Authenticator) requestToken(ctx context.Context, tokenURL string, form url.Values) (Token, oauthSession, error) {
	return a.post(ctx, tokenURL, "request device token", form, "")
}

// post sends a token request (form, optionally with a bearer) and returns the
// token and its session (refresh token and expiries).
func (a *Authenticator) post(ctx context.Context, u, op string, form url.Values, bearer string) (Token, oauthSession, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, oauthSession{}, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	var tr tokenResponse
	sent := a.cfg.Clock.Local()
	if err := a.do(req, op, &tr); err != nil {
		return Token{}, oauthSession{}, err
	}
	t, err := a.token(tr, sent, op)
	if err != nil {
		return Token{}, oauthSession{}, err
	}
	s := oauthSession{access: t.Access, accessExpiry: t.Expiry}
	if tr.RefreshToken != "" && tr.RefreshExpiresIn > 0 {
		life := time.Duration(tr.RefreshExpiresIn) * time.Second
		s.refresh, s.refreshExpiry = tr.RefreshToken, sent.Add(life-safetyMargin(life))
	}
	return t, s, nil
}

// token checks a token response and computes the token's local expiry.
func (a *Authenticator) token(tr tokenResponse, sent time.Time, op string) (Token, error) {
	if tr.AccessToken == "" {
		return Token{}, fmt.Errorf("%s: response has no access_token", op)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return Token{}, fmt.Errorf("%s: token_type %q, want Bearer", op, tr.TokenType)
	}
	life := a.lifetime(tr)
	if life <= 0 {
		return Token{}, fmt.Errorf("%s: token already expired (lifetime %s)", op, life)
	}
	// Count the lifetime from when the request was sent: the server issued the token
	// at some point after that, so this errs on the early side.
	return Token{
		Access:    tr.AccessToken,
		IDToken:   tr.IDToken,
		Scope:     tr.Scope,
		Obtained:  sent,
		Lifetime:  life,
		Expiry:    sent.Add(life - safetyMargin(life)),
		RefreshAt: sent.Add(time.Duration(float64(life) * a.cfg.RefreshAt)),
	}, nil
}

// safetyMargin keeps a token out of requests shortly before its expiry, so no request
// reaches the platform with a token that expires in flight.
func safetyMargin(life time.Duration) time.Duration { return min(life/10, 10*time.Second) }

// lifetime is the token's remaining life measured on the server's clock: the JWT exp
// against the server's Date, so local clock error does not matter; expires_in when
// the token is opaque.
func (a *Authenticator) lifetime(tr tokenResponse) time.Duration {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tr.AccessToken, &claims); err == nil && claims.ExpiresAt != nil {
		serverNow := a.cfg.Clock.Now()
		life := claims.ExpiresAt.Sub(serverNow)
		if off, _ := a.cfg.Clock.Offset(); off != 0 {
			life -= time.Second // the offset came from a Date header, which drops sub-seconds
		}
		if tr.ExpiresIn > 0 {
			// The Date header has one-second resolution; never trust exp beyond expires_in.
			life = min(life, time.Duration(tr.ExpiresIn)*time.Second)
		}
		return life
	}
	return time.Duration(tr.ExpiresIn) * time.Second
}

// do sends req, records the server's clock and decodes a 2xx JSON body into out.
func (a *Authenticator) do(req *http.Request, op string, out any) error {
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		if re := (*RedirectError)(nil); errors.As(err, &re) {
			return fmt.Errorf("%s: %w", op, re) // not the *url.Error quoting the Location whole
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	a.cfg.Clock.ObserveResponse(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: read response: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Op: op, Status: resp.StatusCode}
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &oe) == nil {
			e.Code, e.Description = oe.Error, oe.Description
		}
		return e
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}
