// Package agent is the termagent orchestrator: it wires the configuration, the
// device authentication to PPaaS, the POS-facing Nexo server, the QR payment engine,
// the MQTT event subscriber, the durable store and the outbox forwarder, and owns
// their lifecycle from start to a clean shutdown.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/termagent/termagent/mtls"
)

// Build identifies the binary (stamped at link time).
type Build struct {
	Version string
	Commit  string
	Date    time.Time
}

// Agent is a configured, not yet running agent.
type Agent struct {
	cfg   Config
	build Build
	log   *slog.Logger

	clock  *mtls.Clock
	dev    *mtls.DeviceTLS
	serial string
	model  string
	auth   *mtls.Authenticator
	api    *http.Client

	ready chan struct{}
}

// New validates the configuration, loads the device identity and prepares the
// components. Nothing touches the network until Run.
func New(cfg Config, build Build, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clock := mtls.NewClock(build.Date, nil)
	dev, err := mtls.LoadDeviceTLS(mtls.TLSFiles{Cert: cfg.Cert, Key: cfg.Key, CA: cfg.CA}, clock.Now)
	if err != nil {
		return nil, fmt.Errorf("load device identity: %w", err)
	}
	serial, model, err := mtls.Serial(dev.Leaf())
	if err != nil && cfg.Serial == "" {
		return nil, fmt.Errorf("load device identity: %w", err)
	}
	if cfg.Serial != "" {
		serial = cfg.Serial
	}
	if cfg.Model != "" {
		model = cfg.Model
	}
	if left := dev.ExpiresIn(); left < 30*24*time.Hour {
		log.Warn("device certificate expires soon", "in", left.Round(time.Hour), "not_after", dev.Leaf().NotAfter)
	}
	a := &Agent{cfg: cfg, build: build, log: log, clock: clock, dev: dev, serial: serial, model: model, ready: make(chan struct{})}
	a.auth, err = mtls.NewAuthenticator(mtls.AuthConfig{
		BaseURL: cfg.AuthURL,
		Serial:  serial,
		Client:  mtls.NewHTTPClient(dev, nil, clock, 30*time.Second),
		Grant:   mtls.Grant{Password: cfg.Grant == "password", Username: cfg.Username, Secret: cfg.Password},
		Clock:   clock,
		Logger:  log.With("component", "auth"),
	})
	if err != nil {
		return nil, err
	}
	a.api = mtls.NewHTTPClient(dev, a.auth, clock, 60*time.Second)
	return a, nil
}

// Serial is the device serial number in use.
func (a *Agent) Serial() string { return a.serial }

// Ready is closed once the agent has authenticated and is serving.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run authenticates, serves and keeps everything running until ctx ends, then
// shuts down cleanly.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("termagent starting", "version", a.build.Version, "serial", a.serial, "model", a.model, "auth", a.cfg.AuthURL)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.auth.Run(ctx) })
	g.Go(func() error {
		// The first token is the readiness condition; the refresher retries with
		// backoff, so wait for it rather than failing the agent on a platform outage.
		for {
			tok, err := a.auth.Current(ctx)
			if err == nil {
				a.log.Info("authenticated to PPaaS", "expires", tok.Expiry.Format(time.RFC3339), "lifetime", tok.Lifetime)
				close(a.ready)
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, mtls.ErrBackoff) {
				a.log.Warn("not yet authenticated", "err", err)
			}
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	})
	err := g.Wait()
	a.log.Info("termagent stopped")
	return err
}
