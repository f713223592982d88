package world

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
)

// WorldConfig describes a complete loopback world: a simulated PPaaS with its
// broker and one agent wired to it, as `sim up`, `sim demo` and the end-to-end
// tests run it.
type WorldConfig struct {
	Dir      string     // certificates (Dir/certs) and the agent's data (Dir/data)
	Serial   string     // default certs.DefaultSerial
	Model    string     // default certs.DefaultModel
	PPaaS    sim.Config // Addr, ControlAddr, Payments…; CertsDir is set from Dir
	NexoAddr string     // default 127.0.0.1:0
	// AgentConfig adjusts the agent's configuration after the world's defaults.
	AgentConfig func(*agent.Config)
	// AgentOptions are passed to the agent (store and forwarder tuning).
	AgentOptions agent.Options
	Logger       *slog.Logger
	// Cloud connects the agent to the simulator's Retail API relay (its
	// cloud_url), so that a cloud POS reaches it (issue 16).
	Cloud bool
}

// World is a running simulated PPaaS with an agent.
type World struct {
	PPaaS  *sim.PPaaS
	Agent  *agent.Agent
	Config agent.Config
	dir    string
	stop   context.CancelFunc
	done   chan error

	// POSEvents is the POS's event URL, the agent's pos_event_url unless
	// WorldConfig.AgentConfig sets another (issue 14: after-sale updates).
	POSEvents *POSEvents

	// AgentClock is the agent's local wall clock, unless WorldConfig's
	// AgentOptions brought its own Now (then nil). Jumping it is the
	// clock-jump fault; the control API reaches it at /control/agent/clock.
	AgentClock *sim.AgentClock

	opts agent.Options // what the agent was started with, for RestartAgent
	log  *slog.Logger
}

// StartWorld generates the PKI if missing, starts the simulated PPaaS and an agent
// wired to it, and returns once the agent is ready (authenticated and listening).
func StartWorld(ctx context.Context, cfg WorldConfig) (*World, error) {
	if cfg.Serial == "" {
		cfg.Serial = certs.DefaultSerial
	}
	if cfg.Model == "" {
		cfg.Model = certs.DefaultModel
	}
	if cfg.NexoAddr == "" {
		cfg.NexoAddr = "127.0.0.1:0"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	certsDir := filepath.Join(cfg.Dir, "certs")
	if _, err := certs.Generate(certs.Options{Dir: certsDir, Serial: cfg.Serial, Model: cfg.Model}); err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	pcfg := cfg.PPaaS
	pcfg.CertsDir = certsDir
	if pcfg.Logger == nil {
		pcfg.Logger = log.With("component", "sim")
	}
	p, err := sim.New(pcfg)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	ac := agent.DefaultConfig()
	ac.CredentialsURL, ac.TokenURL = p.URL()+mtls.CredentialsPath, p.URL()+mtls.TokenPath
	ac.APIURL, ac.MQTTURL = p.URL(), p.MQTTURL()
	ac.Cert, ac.Key, ac.CA = filepath.Join(certsDir, certs.ClientCertFile), filepath.Join(certsDir, certs.ClientKeyFile), filepath.Join(certsDir, certs.BundleFile)
	ac.NexoCert, ac.NexoKey = filepath.Join(certsDir, certs.AgentCertFile), filepath.Join(certsDir, certs.AgentKeyFile)
	ac.NexoListen = cfg.NexoAddr
	ac.DataDir = filepath.Join(cfg.Dir, "data")
	if cfg.Cloud {
		ac.CloudURL = p.RelayURL()
	}
	ac.AdminListen = ""
	ac.APMBrands += "," + ScanBrands // consumer-presented payments (scan.go)
	posEvents, err := startPOSEvents()
	if err != nil {
		_ = p.Close(context.Background())
		return nil, err
	}
	ac.POSEventURL = posEvents.URL()
	if cfg.AgentConfig != nil {
		cfg.AgentConfig(&ac)
	}
	opts := cfg.AgentOptions
	if opts.Display == nil {
		opts.Display = terminalDisplay{t: p.Terminals(), serial: cfg.Serial}
	}
	var clk *sim.AgentClock
	if opts.Now == nil {
		clk = &sim.AgentClock{}
		opts.Now = clk.Now
		p.SetAgentClock(clk)
	}
	a, err := agent.New(ac, agent.Build{Version: "sim"}, log.With("component", "agent"), opts)
	if err != nil {
		_ = posEvents.Close(context.Background())
		_ = p.Close(context.Background())
		return nil, err
	}
	p.Terminals().SetScanner(agentScanner(a)) // the virtual terminal's scan field (scan.go)
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w := &World{PPaaS: p, Agent: a, Config: ac, AgentClock: clk, POSEvents: posEvents, dir: cfg.Dir, stop: stop, done: make(chan error, 1), opts: opts, log: log}
	go func() { w.done <- a.Run(actx) }()
	subscribed := a.Subscribed()
	if ac.MQTTURL == "" {
		subscribed = a.Ready()
	}
	select {
	case <-a.Ready():
		// Provider events flow once the agent is subscribed; a world is ready
		// when both are up, so what follows never races the first connection.
		select {
		case <-subscribed:
			return w, nil
		case err := <-w.done:
			stop()
			_ = p.Close(context.Background())
			_ = posEvents.Close(context.Background())
			return nil, fmt.Errorf("world: agent stopped before subscribing: %w", err)
		case <-ctx.Done():
			_ = w.Close(context.Background())
			return nil, fmt.Errorf("world: agent not subscribed to events: %w", ctx.Err())
		}
	case err := <-w.done:
		stop()
		_ = p.Close(context.Background())
		_ = posEvents.Close(context.Background())
		return nil, fmt.Errorf("world: agent stopped before ready: %w", err)
	case <-ctx.Done():
		_ = w.Close(context.Background())
		return nil, fmt.Errorf("world: agent not ready: %w", ctx.Err())
	}
}

// POS returns a Nexo client for the agent's POS endpoint, trusting the dev CA.
func (w *World) POS() (*nexo.Client, error) {
	pool, err := mtls.LoadCAPool(filepath.Join(w.dir, "certs", certs.BundleFile))
	if err != nil {
		return nil, err
	}
	return &nexo.Client{
		URL:  w.Agent.NexoURL(),
		HTTP: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	}, nil
}

// StopAgent stops the agent (as SIGTERM would) and waits for it.
func (w *World) StopAgent(ctx context.Context) error {
	w.stop()
	select {
	case err := <-w.done:
		w.done <- err // keep it for Close
		return err
	case <-ctx.Done():
		return fmt.Errorf("stop agent: %w", ctx.Err())
	}
}

// Close stops the agent, then the simulated PPaaS.
func (w *World) Close(ctx context.Context) error {
	w.stop()
	var errs []error
	select {
	case err := <-w.done:
		errs = append(errs, err)
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop agent: %w", ctx.Err()))
	}
	errs = append(errs, w.PPaaS.Close(ctx), w.POSEvents.Close(ctx))
	return errors.Join(errs...)
}

// terminalDisplay shows an in-process agent's screens on the virtual terminal.
type terminalDisplay struct {
	t      *sim.Terminals
	serial string
}

func (d terminalDisplay) ShowScreen(_ context.Context, s display.Screen) error {
	s.Serial = d.serial
	d.t.Show(s)
	return nil
}

// RestartAgent stops the agent (as SIGTERM would) and starts a new one with
// the same configuration and data directory (its journal), as a restarted
// process: nothing the old one held in memory survives. It returns once the
// new agent is ready (and subscribed, with a broker). The new agent listens
// on a new Nexo port when the configured one was :0.
func (w *World) RestartAgent(ctx context.Context) error {
	if err := w.StopAgent(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("restart agent: %w", err)
	}
	<-w.done // StopAgent kept it for Close: this agent is gone
	a, err := agent.New(w.Config, agent.Build{Version: "sim"}, w.log.With("component", "agent"), w.opts)
	if err != nil {
		return fmt.Errorf("restart agent: %w", err)
	}
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.Agent, w.stop = a, stop
	go func() { w.done <- a.Run(actx) }()
	subscribed := a.Subscribed()
	if w.Config.MQTTURL == "" {
		subscribed = a.Ready()
	}
	for _, ch := range []<-chan struct{}{a.Ready(), subscribed} {
		select {
		case <-ch:
		case err := <-w.done:
			w.done <- err
			return fmt.Errorf("restart agent: stopped before ready: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("restart agent: not ready: %w", ctx.Err())
		}
	}
	return nil
}
