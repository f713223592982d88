package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/sim/world"
)

// runFleet runs N simulated terminals (in-process agents) against one
// simulated PPaaS and broker, drives payments from POS clients and reports
// throughput, latency, memory per terminal and lost or duplicated payments.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100, "number of simulated terminals")
	payments := fs.Int("payments", 1, "payments per terminal (one at a time per terminal)")
	concurrency := fs.Int("concurrency", 0, "POS clients paying at once (default: every terminal at once)")
	startConcurrency := fs.Int("start-concurrency", 32, "terminals starting (authenticating, subscribing) at once")
	dir := fs.String("dir", "", "directory for certificates and the terminals' data (default: a temporary one, removed)")
	brand := fs.String("brand", "KB", "APM brand paid with (KB, PENNYMATIC, PLEDG, KTWIDGET, PTI)")
	amount := fs.String("amount", "1.00", "amount of each payment, major units")
	currency := fs.String("currency", "EUR", "ISO 4217 currency")
	mqttURL := fs.String("mqtt-url", "", "external MQTT broker (ssl://host:port) presenting a certificate from DIR/certs's CA; the simulator publishes to it with -mqtt-username and $SIM_MQTT_PASSWORD")
	mqttUser := fs.String("mqtt-username", "", "username of the simulator's publisher on the external broker")
	mosquitto := fs.Bool("mosquitto", false, "start a Mosquitto broker (TLS, the fleet's certificates) and use it instead of the embedded one")
	fsync := fs.Bool("fsync", true, "make the terminals' stores fsync, as a terminal does (-fsync=false: one disk stands in for N terminals' flash, so the default measures that disk too)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	logLevel := fs.String("log-level", "", "log the simulator and the agents at this level to stderr; default: no log")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %v", rest)
	}
	if *n < 1 {
		return errors.New("-n must be at least 1")
	}
	if *mosquitto && *mqttURL != "" {
		return errors.New("-mosquitto and -mqtt-url are exclusive")
	}
	minor, err := parseAmount(*amount, *currency)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "termagent-fleet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	cfg := world.FleetConfig{
		Terminals: *n, Payments: *payments, Dir: *dir, Concurrency: *concurrency, StartConcurrency: *startConcurrency,
		Brand: *brand, Amount: minor, Currency: *currency,
		MQTTURL: *mqttURL, MQTTUsername: *mqttUser, MQTTPassword: os.Getenv("SIM_MQTT_PASSWORD"),
		NoSync: !*fsync, Logger: log, Progress: stderr,
	}
	if *mosquitto {
		certsDir := filepath.Join(*dir, "certs")
		if _, err := certs.Generate(certs.Options{Dir: certsDir}); err != nil {
			return err
		}
		m, err := world.StartMosquitto(ctx, *dir, certsDir)
		if err != nil {
			return err
		}
		defer m.Close()
		cfg.MQTTURL = m.URL()
		fmt.Fprintf(stderr, "mosquitto listening on %s\n", m.URL())
	}
	rep, err := world.RunFleet(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, rep.String())
	}
	if !rep.OK() {
		return fmt.Errorf("%d failed, %d lost, %d duplicated, %d unreported of %d payments", rep.Failed, rep.Lost, rep.Duplicated, rep.Unreported, rep.Payments)
	}
	return nil
}
