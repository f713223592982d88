package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// worldFlags are the flags `sim up` and `sim demo` share.
type worldFlags struct {
	dir, api, control, mqtt, nexo, mqttURL, provider, logLevel string
	tokenTTL                                                   time.Duration
	controlInsecure                                            bool
}

func (w *worldFlags) register(fs *flag.FlagSet, dir, api, control, mqtt, nexo string) {
	fs.StringVar(&w.dir, "dir", dir, "directory for the certificates (DIR/certs) and the agent's data (DIR/data)")
	fs.StringVar(&w.api, "addr", api, "mTLS address of the simulated PPaaS (auth and APIs)")
	fs.StringVar(&w.control, "control", control, "plain-HTTP loopback address of the control API and virtual terminal")
	fs.BoolVar(&w.controlInsecure, "control-insecure", false, "allow -control on a non-loopback address (anyone who reaches it can inject faults and pay)")
	fs.StringVar(&w.mqtt, "mqtt", mqtt, "TLS address of the embedded MQTT broker")
	fs.StringVar(&w.nexo, "nexo", nexo, "address of the agent's POS-facing Nexo HTTPS server")
	fs.StringVar(&w.mqttURL, "mqtt-url", "", "use an external MQTT broker (ssl://host:port) instead of the embedded one")
	fs.StringVar(&w.provider, "provider", "manual", "consumer behaviour: manual (control API / virtual terminal), approve or decline")
	fs.StringVar(&w.logLevel, "log-level", "error", "log level of the simulator and the agent (info: one line per payment step)")
	fs.DurationVar(&w.tokenTTL, "token-ttl", 300*time.Second, "life of issued device tokens")
}

func (w *worldFlags) config(stderr io.Writer) (world.WorldConfig, error) {
	log, err := newLogger(stderr, w.logLevel)
	if err != nil {
		return world.WorldConfig{}, err
	}
	mode := sim.ProviderMode(w.provider)
	switch mode {
	case sim.ProviderManual, sim.ProviderApprove, sim.ProviderDecline:
	default:
		return world.WorldConfig{}, fmt.Errorf("-provider: want manual, approve or decline, got %q", w.provider)
	}
	return world.WorldConfig{
		Dir: w.dir,
		PPaaS: sim.Config{
			Addr: w.api, ControlAddr: w.control, ControlInsecure: w.controlInsecure, TokenTTL: w.tokenTTL,
			Payments: sim.PaymentsConfig{Provider: mode, MQTTAddr: w.mqtt, ExternalMQTTURL: w.mqttURL},
		},
		NexoAddr: w.nexo,
		Logger:   log,
		Cloud:    true, // issue 16: sim pos -cloud reaches the agent through the Retail API
	}, nil
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var wf worldFlags
	wf.register(fs, ".sim", "127.0.0.1:9021", "127.0.0.1:9080", "127.0.0.1:8883", "127.0.0.1:8443")
	fresh := fs.Bool("fresh", false, "start afresh: remove DIR/data, the agent's journal of a previous run (the certificates stay)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	cfg, err := wf.config(stderr)
	if err != nil {
		return err
	}
	dataDir := filepath.Join(wf.dir, "data")
	if *fresh {
		if err := os.RemoveAll(dataDir); err != nil {
			return fmt.Errorf("-fresh: remove the previous run's data: %w", err)
		}
	}
	previous, err := previousRun(dataDir)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	w, err := world.StartWorld(sctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `termagent world is up (loopback only); Ctrl-C stops it.

  POS endpoint (Nexo, HTTPS):  %s   POIID %s
  virtual terminal:            %s
  control API:                 %s/control/...
  simulated PPaaS (mTLS):      %s
  MQTT broker:                 %s
  certificates:                %s/certs   (CA bundle: %s/certs/bundle.pem)

Try, from another shell: %s
`, w.Agent.NexoURL(), w.Agent.POIID(), w.PPaaS.TerminalURL(w.Agent.Serial()), w.PPaaS.ControlURL(), w.PPaaS.URL(), w.PPaaS.MQTTURL(),
		wf.dir, wf.dir, tryPay(wf, w))
	if previous {
		fmt.Fprint(stdout, previousRunWarning(dataDir))
	}
	if wf.logLevel == "error" {
		fmt.Fprintln(stdout, "(sim up -log-level info logs one line per payment step)")
	}
	fmt.Fprint(stderr, certs.GitWarning(ctx, filepath.Join(wf.dir, "certs")))
	<-ctx.Done()
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	return w.Close(cctx)
}

// previousRun reports whether dataDir holds an agent's data from an earlier
// sim up: the agent's journal survives a restart, the simulated PPaaS's state
// (it lives in memory) does not.
func previousRun(dataDir string) (bool, error) {
	entries, err := os.ReadDir(dataDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for a previous run's data: %w", err)
	}
	return len(entries) > 0, nil
}

// previousRunWarning tells the user that this world continues an earlier
// one's journal against a simulated PPaaS that starts empty, and how to start
// afresh.
func previousRunWarning(dataDir string) string {
	return fmt.Sprintf(`
NOTE: the agent's journal from a previous run is in %[1]s
but the simulated PPaaS starts empty: it no longer knows those payments. One
left unfinished (a Pledg refund pending, a payment in progress) stays
InProgress for good and sim pos reconcile may answer Busy. To start afresh:
Ctrl-C, then the same %[2]s up command with -fresh (it removes that
directory; the certificates stay).

`, dataDir, progName())
}

// tryPay is the sim pos command that pays this world's agent: the flags it
// needs beyond sim pos's defaults (which match sim up's).
func tryPay(wf worldFlags, w *world.World) string {
	cmd := progName() + " pos pay 12.50 EUR"
	if u := w.Agent.NexoURL(); u != "https://127.0.0.1:8443/nexo" {
		cmd += " -url " + u
	}
	if wf.dir != ".sim" {
		cmd += " -ca " + filepath.Join(wf.dir, "certs", "bundle.pem")
	}
	if c := w.PPaaS.ControlURL(); c != defaultControlURL {
		cmd += " -control " + c
	}
	return cmd
}
