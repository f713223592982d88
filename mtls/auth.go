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

// Paths of the PPaaS device authentication endpoints (port 9021, mTLS).
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
	// client_id=ppaas-powered-app).
	Password bool
	Username string
	Secret   string // the end user's password; kept in memory only
	Scope    string // default "openid profile email"
}

// AuthConfig configures an Authenticator.
type AuthConfig struct {
	BaseURL string       // https://auth-host:9021
	Serial  string       // the device serial number, as in its certificate
	Client  *http.Client // an mTLS client (DeviceTLS.Config); deadlines come from contexts
	Grant   Grant
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
	IDToken          string `json:"id_token"`
	Scope            string `json:"scope"`
}

// NewAuthenticator checks the configuration and returns an Authenticator with no
// token yet.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("auth: base URL is empty")
	}
	if _, err := url.Parse(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("auth: base URL: %w", err)
	}
	if cfg.Client == nil {
		return nil, errors.New("auth: no mTLS HTTP client")
	}
	if !cfg.Grant.Password && cfg.Serial == "" {
		return nil, errors.New("auth: serial number is empty")
	}
	if cfg.Grant.Password && (cfg.Grant.Username == "" || cfg.Grant.Secret == "") {
		return nil, errors.New("auth: password grant needs a username and a password")
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
	if a.cfg.Grant.Password {
		form := url.Values{
			"grant_type": {"password"},
			"client_id":  {PoweredAppClientID},
			"username":   {a.cfg.Grant.Username},
			"password":   {a.cfg.Grant.Secret},
			"scope":      {a.cfg.Grant.Scope},
		}
		return a.requestToken(ctx, form)
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
		t, err := a.requestToken(ctx, form)
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
	u := a.cfg.BaseURL + CredentialsPath + "?serial_number=" + url.QueryEscape(a.cfg.Serial)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return merchantCredentials{}, fmt.Errorf("fetch merchant credentials: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var list []merchantCredentials
	if err := a.do(req, "fetch merchant credentials", &list); err != nil {
		return merchantCredentials{}, err
	}
	if len(list) == 0 || list[0].ClientID == "" || list[0].ClientSecret == "" {
		return merchantCredentials{}, fmt.Errorf("fetch merchant credentials: no credentials for serial %s", a.cfg.Serial)
	}
	a.mu.Lock()
	a.creds = &list[0]
	a.mu.Unlock()
	a.log.Info("merchant credentials obtained", "credentials", list[0])
	return list[0], nil
}

func (a *Authenticator) requestToken(ctx context.Context, form url.Values) (Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.BaseURL+TokenPath, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, fmt.Errorf("request device token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tr tokenResponse
	sent := a.cfg.Clock.Local()
	if err := a.do(req, "request device token", &tr); err != nil {
		return Token{}, err
	}
	if tr.AccessToken == "" {
		return Token{}, errors.New("request device token: response has no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return Token{}, fmt.Errorf("request device token: token_type %q, want Bearer", tr.TokenType)
	}
	life := a.lifetime(tr)
	if life <= 0 {
		return Token{}, fmt.Errorf("request device token: token already expired (lifetime %s)", life)
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
