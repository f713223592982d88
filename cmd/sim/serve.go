package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/sim"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("certs", "conf", "directory of the development PKI (generated if missing)")
	addr := fs.String("addr", "127.0.0.1:9021", "mTLS listen address of the simulated PPaaS")
	control := fs.String("control", "127.0.0.1:9080", "plain-HTTP loopback address of the control API")
	mqtt := fs.String("mqtt", "127.0.0.1:8883", "TLS address of the embedded MQTT broker (127.0.0.1:0: a free port)")
	insecure := fs.Bool("control-insecure", false, "allow -control on a non-loopback address (anyone who reaches it can inject faults)")
	ttl := fs.Duration("token-ttl", 300*time.Second, "life of issued device tokens")
	logLevel := fs.String("log-level", "info", "log level (debug, info, warn, error)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if _, err := certs.Generate(certs.Options{Dir: *dir}); err != nil {
		return fmt.Errorf("prepare certificates: %w", err)
	}
	fmt.Fprint(stderr, certs.GitWarning(ctx, *dir))
	p, err := sim.New(sim.Config{Addr: *addr, ControlAddr: *control, ControlInsecure: *insecure, CertsDir: *dir, TokenTTL: *ttl, Logger: log,
		Payments: sim.PaymentsConfig{MQTTAddr: *mqtt}})
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simulated PPaaS: %s (mTLS)\nMQTT broker:     %s\ncontrol API:     %s/control/...\n", p.URL(), p.MQTTURL(), p.ControlURL())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Close(sctx)
}
