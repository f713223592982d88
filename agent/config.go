package agent

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// Config is everything the agent needs to run. It is read from, in increasing
// priority: defaults, a JSON file (-config), TERMAGENT_* environment variables and
// flags. Secrets (the end-user password, the Nexo key passphrase) come from the
// environment or the file only, never from flags, which other users can see.
type Config struct {
	// Platform
	AuthURL string `json:"auth_url" help:"deprecated shorthand: one base URL for credentials_url and token_url ({auth_url}/oauth2-mtls/v1/…)"`
	APIURL  string `json:"api_url" help:"PPaaS device API base URL; default from -env"`
	MQTTURL string `json:"mqtt_url" help:"MQTT broker URL for provider events (ssl://host:port; our assumption, not in the PPaaS document); empty: polling only"`
	Cert    string `json:"cert" help:"device certificate (PEM); its Subject carries the serial number"`
	Key     string `json:"key" help:"device private key (PEM, mode 0600)"`
	CA      string `json:"ca" help:"CA bundle that verifies PPaaS (PEM)"`
	Serial  string `json:"serial" help:"serial number; default: read from the device certificate"`
	Model   string `json:"model" help:"terminal model; default: read from the device certificate CN"`

	Grant    string `json:"grant" help:"client_credentials (machine-to-machine), password (end-user mode) or demo-custom-token (demo only, no device certificate)"`
	Username string `json:"username" help:"end user (grant password) or merchant (grant demo-custom-token)"`
	Password string `json:"password" secret:"true" help:"password of username (env or file only)"`

	// issue 13: the PPaaS document's endpoints, environment presets and grant
	// modes. Empty URLs are filled from the env preset (see Resolve).
	Env              string        `json:"env" help:"environment preset of the platform URLs: demo, nar, ind or eur (each URL stays overridable)"`
	CredentialsURL   string        `json:"credentials_url" help:"merchant credentials endpoint (mTLS, GET ?serial_number=); default from -env"`
	TokenURL         string        `json:"token_url" help:"device token endpoint (mTLS, port 9021); default from -env"`
	UserDomain       string        `json:"user_domain" help:"userDomain of the merchant credentials entry to use when the platform returns several"`
	MerchantTokenURL string        `json:"merchant_token_url" help:"demo-custom-token: token endpoint of the Keycloak realm sandbox-ma; default from -env demo"`
	MerchantClientID string        `json:"merchant_client_id" help:"demo-custom-token: realm client of the merchant login"`
	CustomTokenURL   string        `json:"custom_token_url" help:"demo-custom-token: the realm's custom-token endpoint; default from -env demo"`
	DeviceMethod     string        `json:"device_method" help:"demo-custom-token: the method form field of the custom-token request"`
	PollFirst        time.Duration `json:"poll_first" help:"with no MQTT broker (or it is down): first transaction status poll after this"`
	PollMax          time.Duration `json:"poll_max" help:"with no MQTT broker (or it is down): cap of the status poll backoff"`

	// issue 16: the cloud path (a POS reaching the terminal through the platform).
	CloudURL string `json:"cloud_url" help:"wss:// URL of the platform's device relay for cloud POS (Nexo v5 over a websocket, mTLS + device token); empty: off"`

	// POS side (Nexo)
	NexoListen        string `json:"nexo_listen" help:"address of the POS-facing Nexo HTTPS server"`
	NexoCert          string `json:"nexo_cert" help:"TLS certificate of the Nexo server (PEM)"`
	NexoKey           string `json:"nexo_key" help:"TLS key of the Nexo server (PEM)"`
	NexoPlainHTTP     bool   `json:"nexo_plain_http" help:"serve Nexo over plain HTTP (loopback testing only)"`
	POIID             string `json:"poiid" help:"POIID the POS addresses; default {MODEL}-{SERIAL}"`
	Strict            bool   `json:"strict" help:"require a Nexo Login before any service"`
	NexoKeyIdentifier string `json:"nexo_key_identifier" help:"Nexo message security key identifier"`
	NexoKeyVersion    int    `json:"nexo_key_version" help:"Nexo message security key version"`
	NexoPassphrase    string `json:"nexo_passphrase" secret:"true" help:"Nexo message security passphrase (env or file only)"`
	POSEventURL       string `json:"pos_event_url" help:"URL where EventNotifications are POSTed to the POS"`
	DisplayURL        string `json:"display_url" help:"URL where the terminal display's screens are POSTed (the simulator's virtual terminal); empty: log only"`

	// Payments
	APMBrands      string        `json:"apm_brands" help:"brand=paymentType:scenario,... mapping Nexo AllowedPaymentBrand / PaymentInstrumentType to PPaaS QR methods (scenario consumerscan or merchantscan)"`
	PaymentTimeout time.Duration `json:"payment_timeout" help:"time the consumer has to pay before the agent cancels"`
	EventWait      time.Duration `json:"event_wait" help:"while the MQTT broker is up: time without an event before the agent polls the transaction status (else poll_first)"`

	// issue 10: PPaaS status spellings and confirmation bound
	PPaaSStatuses  string `json:"ppaas_statuses" help:"SPELLING=state,... mapping the platform's status spellings to ours (e.g. AUTHORIZED=approved,PENDING=pending); unknown spellings count as pending"`
	ConfirmTimeout string `json:"confirm_timeout" help:"how long a paid payment waits for its provider's confirmation: a duration, or PAYMENTTYPE=duration,... with an optional default duration (e.g. PENNYMATIC=30m,10m)"`

	// What tells a chargeback from a refund. Its status spellings
	// are ppaas_statuses entries SPELLING=charged_back.
	PPaaSChargebackReasons string `json:"ppaas_chargeback_reasons" help:"phrases of a status reason that tell a chargeback from a refund when no status says it (comma-separated, case-insensitive; empty: 'charged back,chargeback'; none: statuses only)"`

	// Local
	DataDir     string `json:"data_dir" help:"directory of the agent's durable store"`
	AdminListen string `json:"admin_listen" help:"loopback address for /healthz, /readyz and /metrics; empty disables"`
	LogFormat   string `json:"log_format" help:"text or json"`
	LogLevel    string `json:"log_level" help:"debug, info, warn or error"`

	// issue 11: hostile input
	JournalMaxBytes int           `json:"journal_max_bytes" help:"disk budget of the transaction journal in bytes; past it the oldest finished transactions are evicted (never an unfinished one)"`
	MemoryTrimAfter time.Duration `json:"memory_trim_after" help:"after this long without Nexo or admin requests or deliveries, following some, hand the memory the burst left behind back to the OS (two collections); 0 disables"`

	// issue 14: digital receipts
	DigitalReceipts bool `json:"digital_receipts" help:"queue each successful payment's, refund's and reversal's receipt as a digital-receipt event to PPaaS, committed with its final response"`

	// The after-sale sweep (agent/aftersale_sweep.go): provider refunds and
	// chargebacks read from PPaaS's listing, for an agent that polls or
	// lost an event. The interval is a string: empty is the default by
	// mode, which a duration field could not tell from 0 (off).
	AfterSaleSweepInterval string        `json:"aftersale_sweep_interval" help:"how often the agent lists its recent transactions at PPaaS for provider refunds and chargebacks it was not told of (a duration between 10s and 24h); empty: 10m with polling only, 60m with mqtt_url; 0 or negative: off"`
	AfterSaleSweepWindow   time.Duration `json:"aftersale_sweep_window" help:"how far back the after-sale sweep lists transactions (by creation; between 1h and 400 days, and at least twice the interval; default 2880h, 120 days)"`
}

// DefaultConfig is the configuration of a terminal on the PPaaS demo environment
// with the seed's file layout (conf/client.pem, conf/client.key, conf/bundle.pem);
// its platform URLs are empty until Resolve fills them from Env.
func DefaultConfig() Config {
	return Config{
		Env:            EnvDemo,
		Cert:           "conf/client.pem",
		Key:            "conf/client.key",
		CA:             "conf/bundle.pem",
		Grant:          GrantClientCredentials,
		NexoListen:     "127.0.0.1:8443",
		NexoCert:       "conf/agent.pem",
		NexoKey:        "conf/agent.key",
		APMBrands:      "KB=KB:consumerscan,PENNYMATIC=PENNYMATIC:consumerscan,PLEDG=PLEDG:consumerscan,KTWIDGET=KTWIDGET:consumerscan,PTI=PTI:consumerscan",
		PaymentTimeout: 120 * time.Second,
		ConfirmTimeout: "10m",
		EventWait:      5 * time.Second,
		DataDir:        "data",
		AdminListen:    "127.0.0.1:9464",
		LogFormat:      "text",
		LogLevel:       "info",
		// issue 13
		MerchantClientID: "ppaas-portal",
		DeviceMethod:     "[api, device_flow]",
		PollFirst:        time.Second,
		PollMax:          5 * time.Second,

		// issue 11: hostile input
		JournalMaxBytes: 64 << 20,
		MemoryTrimAfter: 10 * time.Second,

		// issue 14
		DigitalReceipts: true,

		AfterSaleSweepWindow: defaultSweepWindow,
	}
}

// FieldError is a configuration error that names the field.
type FieldError struct {
	Field string // the JSON name, e.g. nexo_listen
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "password" || e.Field == "nexo_passphrase" {
		return fmt.Sprintf("config %s (env %s): %s", e.Field, envName(e.Field), e.Msg)
	}
	return fmt.Sprintf("config %s (flag -%s, env %s): %s", e.Field, flagName(e.Field), envName(e.Field), e.Msg)
}

func flagName(field string) string { return strings.ReplaceAll(field, "_", "-") }
func envName(field string) string  { return "TERMAGENT_" + strings.ToUpper(field) }

// Validate checks every field and returns all problems, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	c = c.Resolve()
	errs = append(errs, c.validatePlatform()...)
	if c.MQTTURL != "" {
		pu, err := url.Parse(c.MQTTURL)
		if err != nil || pu.Host == "" || (pu.Scheme != "ssl" && pu.Scheme != "tls" && pu.Scheme != "mqtts") {
			bad("mqtt_url", "must be ssl://host:port (TLS is required), got %q", c.MQTTURL)
		}
	}
	required := map[string]string{"data_dir": c.DataDir}
	if c.usesClientCertificate() {
		required["cert"], required["key"], required["ca"] = c.Cert, c.Key, c.CA
	}
	for field, v := range required {
		if v == "" {
			bad(field, "is required")
		}
	}
	host, _, err := net.SplitHostPort(c.NexoListen)
	if err != nil {
		bad("nexo_listen", "must be host:port: %v", err)
	} else if !loopback(host) {
		if c.NexoPlainHTTP {
			bad("nexo_plain_http", "plain HTTP is only allowed on a loopback address, not %q", c.NexoListen)
		}
		if c.NexoPassphrase == "" {
			bad("nexo_passphrase", "a LAN-facing Nexo server (%s) requires message security", c.NexoListen)
		}
	}
	if c.POIID != "" {
		if p := poiidProblem(c.POIID, false); p != "" {
			bad("poiid", "%s", p)
		}
	}
	if !c.NexoPlainHTTP && (c.NexoCert == "" || c.NexoKey == "") {
		bad("nexo_cert", "HTTPS needs nexo_cert and nexo_key (or nexo_plain_http on loopback)")
	}
	if c.NexoPassphrase != "" && c.NexoKeyIdentifier == "" {
		bad("nexo_key_identifier", "is required with a passphrase")
	}
	if c.POSEventURL != "" {
		if pu, err := url.Parse(c.POSEventURL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			bad("pos_event_url", "must be an http(s) URL, got %q", c.POSEventURL)
		}
	}
	if c.DisplayURL != "" {
		if pu, err := url.Parse(c.DisplayURL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			bad("display_url", "must be an http(s) URL, got %q", c.DisplayURL)
		}
	}
	errs = append(errs, c.validateCloud()...) // issue 16
	if _, err := c.Brands(); err != nil {
		bad("apm_brands", "%v", err)
	}
	if _, err := ppaas.ParseStatuses(c.PPaaSStatuses); err != nil {
		bad("ppaas_statuses", "%v", err)
	}
	if _, err := ppaas.ParseChargebackReasons(c.PPaaSChargebackReasons); err != nil {
		bad("ppaas_chargeback_reasons", "%v", err)
	}
	if _, _, err := c.ConfirmTimeouts(); err != nil {
		bad("confirm_timeout", "%v", err)
	}
	if c.PaymentTimeout < time.Second || c.PaymentTimeout > time.Hour {
		bad("payment_timeout", "must be between 1s and 1h, got %s", c.PaymentTimeout)
	}
	if c.MemoryTrimAfter != 0 && (c.MemoryTrimAfter < 100*time.Millisecond || c.MemoryTrimAfter > time.Hour) {
		bad("memory_trim_after", "must be 0 (off) or between 100ms and 1h, got %s", c.MemoryTrimAfter)
	}
	if c.EventWait < 10*time.Millisecond || c.EventWait > 10*time.Minute {
		bad("event_wait", "must be between 10ms and 10m, got %s", c.EventWait)
	}
	if c.AdminListen != "" {
		if host, _, err := net.SplitHostPort(c.AdminListen); err != nil || !loopback(host) {
			bad("admin_listen", "must be a loopback host:port, got %q", c.AdminListen)
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "must be text or json, got %q", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	if _, err := c.SweepInterval(); err != nil {
		bad("aftersale_sweep_interval", "%v", err)
	}
	if c.AfterSaleSweepWindow < minSweepWindow || c.AfterSaleSweepWindow > maxSweepWindow {
		bad("aftersale_sweep_window", "must be between 1h and 400 days (9600h), got %s", c.AfterSaleSweepWindow)
	} else if every, err := c.SweepInterval(); err == nil && every > 0 && c.AfterSaleSweepWindow < 2*every {
		// A payment created between two sweeps must be listed by one.
		bad("aftersale_sweep_window", "must be at least twice aftersale_sweep_interval (%s), got %s", every, c.AfterSaleSweepWindow)
	}
	// issue 11: hostile input
	if c.JournalMaxBytes < 1<<20 {
		bad("journal_max_bytes", "must be at least 1 MiB (1048576), got %d", c.JournalMaxBytes)
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DBPath is the bbolt file in the data directory.
func (c Config) DBPath() string { return filepath.Join(c.DataDir, "termagent.db") }

// Redacted is the configuration with secrets masked, for logs and `config check`.
func (c Config) Redacted() Config {
	if c.Password != "" {
		c.Password = "[redacted]"
	}
	if c.NexoPassphrase != "" {
		c.NexoPassphrase = "[redacted]"
	}
	return c
}

// LoadConfig builds the configuration from defaults, the -config file, TERMAGENT_*
// environment variables and flags, in that order. getenv is os.Getenv in production.
func LoadConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, []string, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("TERMAGENT_CONFIG"), "JSON configuration file (env TERMAGENT_CONFIG)")
	type setter struct {
		field string
		value reflect.Value
	}
	var fields []setter
	rv := reflect.ValueOf(&cfg).Elem()
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rt.Field(i)
		jsonName := strings.Split(f.Tag.Get("json"), ",")[0]
		fields = append(fields, setter{jsonName, rv.Field(i)})
		if f.Tag.Get("secret") == "true" {
			continue
		}
		usage := fmt.Sprintf("%s (env %s)", f.Tag.Get("help"), envName(jsonName))
		fs.Var(&fieldValue{rv.Field(i)}, flagName(jsonName), usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags] [run]\n       %s version | config check | queue ... | refund ... | service run|install|uninstall\n\nFlags (each also settable by its environment variable and in the -config file under its name with underscores):\n", name, name)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nSecrets are read from the environment or the file only: %s, %s.\n", envName("password"), envName("nexo_passphrase"))
	}
	// Flags are parsed first to find -config, then the layers are applied in order and
	// the flags parsed again so they win.
	if _, err := parseFlags(fs, args); err != nil {
		return cfg, nil, err
	}
	cfg = DefaultConfig()
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, nil, fmt.Errorf("read config file: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		var fileCfg configFileJSON
		fileCfg.Config = &cfg
		if err := dec.Decode(&fileCfg); err != nil {
			return cfg, nil, fmt.Errorf("config file %s: %w", *configFile, err)
		}
	}
	for _, s := range fields {
		if v := getenv(envName(s.field)); v != "" {
			if err := (&fieldValue{s.value}).Set(v); err != nil {
				return cfg, nil, &FieldError{Field: s.field, Msg: fmt.Sprintf("environment %s: %v", envName(s.field), err)}
			}
		}
	}
	rest, err := parseFlags(fs, args)
	if err != nil {
		return cfg, nil, err
	}
	return cfg.Resolve(), rest, nil
}

// configFileJSON lets the file carry comments as "//…" keys and durations as
// strings ("120s"), which is how the documented example is written.
type configFileJSON struct{ *Config }

func (c *configFileJSON) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	rv := reflect.ValueOf(c.Config).Elem()
	byName := map[string]reflect.Value{}
	for i := range rv.NumField() {
		byName[strings.Split(rv.Type().Field(i).Tag.Get("json"), ",")[0]] = rv.Field(i)
	}
	for k, v := range raw {
		if strings.HasPrefix(k, "//") {
			continue
		}
		f, ok := byName[k]
		if !ok {
			return unknownKey(k, false)
		}
		if f.Type() == reflect.TypeFor[time.Duration]() {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return &FieldError{Field: k, Msg: `want a duration string such as "120s"`}
			}
			if err := (&fieldValue{f}).Set(s); err != nil {
				return &FieldError{Field: k, Msg: err.Error()}
			}
			continue
		}
		if err := json.Unmarshal(v, f.Addr().Interface()); err != nil {
			return &FieldError{Field: k, Msg: err.Error()}
		}
	}
	return nil
}

// fieldValue adapts a Config field to flag.Value.
type fieldValue struct{ v reflect.Value }

func (f *fieldValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return fmt.Sprint(f.v.Interface())
}

func (f *fieldValue) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

func (f *fieldValue) Set(s string) error {
	switch {
	case f.v.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.v.SetInt(int64(d))
	case f.v.Kind() == reflect.String:
		f.v.SetString(s)
	case f.v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.v.SetBool(b)
	case f.v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		f.v.SetInt(int64(n))
	default:
		return fmt.Errorf("unsupported type %s", f.v.Type())
	}
	return nil
}

// Brands parses apm_brands into the QR engine's brand mapping.
func (c Config) Brands() (map[string]qr.Method, error) {
	out := map[string]qr.Method{}
	for _, item := range strings.Split(c.APMBrands, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		brand, method, ok := strings.Cut(item, "=")
		pt, sc, ok2 := strings.Cut(method, ":")
		if !ok || !ok2 || strings.TrimSpace(brand) == "" || strings.TrimSpace(pt) == "" {
			return nil, fmt.Errorf("%q: want brand=paymentType:scenario", item)
		}
		m := qr.Method{PaymentType: strings.TrimSpace(pt), Scenario: ppaas.Scenario(strings.TrimSpace(sc))}
		if !m.Scenario.Valid() {
			return nil, fmt.Errorf("%q: scenario must be consumerscan or merchantscan", item)
		}
		out[strings.TrimSpace(brand)] = m
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no brand mapped: the agent could take no payment")
	}
	return out, nil
}

// ConfirmTimeouts parses confirm_timeout (issue 10): the default bound and the
// bounds per PPaaS paymentType.
func (c Config) ConfirmTimeouts() (time.Duration, map[string]time.Duration, error) {
	def, per := time.Duration(0), map[string]time.Duration{}
	for _, item := range strings.Split(c.ConfirmTimeout, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		pt, ds, ok := strings.Cut(item, "=")
		if !ok {
			ds, pt = pt, ""
		}
		d, err := time.ParseDuration(strings.TrimSpace(ds))
		if err != nil || d < time.Second || d > 24*time.Hour {
			return 0, nil, fmt.Errorf("%q: want a duration between 1s and 24h, or PAYMENTTYPE=duration", item)
		}
		if pt == "" {
			def = d
			continue
		}
		per[strings.TrimSpace(pt)] = d
	}
	return def, per, nil
}

// The after-sale sweep's defaults and bounds (aftersale_sweep_interval,
// aftersale_sweep_window).
const (
	defaultSweepPolling = 10 * time.Minute // no broker: the sweep is the only way to hear of a refund
	defaultSweepMQTT    = time.Hour        // a broker: the sweep catches the events it lost
	minSweepInterval    = 10 * time.Second
	maxSweepInterval    = 24 * time.Hour
	defaultSweepWindow  = 120 * 24 * time.Hour // card schemes' usual chargeback window
	minSweepWindow      = time.Hour
	maxSweepWindow      = 400 * 24 * time.Hour
)

// SweepInterval is aftersale_sweep_interval resolved: empty is the default
// of the event source (10m with polling only, 60m with mqtt_url), 0 or a
// negative duration is 0 (the sweep is off).
func (c Config) SweepInterval() (time.Duration, error) {
	s := strings.TrimSpace(c.AfterSaleSweepInterval)
	if s == "" {
		if c.MQTTURL == "" {
			return defaultSweepPolling, nil
		}
		return defaultSweepMQTT, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("want a duration such as \"10m\" (0 turns the sweep off), got %q", s)
	case d <= 0:
		return 0, nil
	case d < minSweepInterval || d > maxSweepInterval:
		return 0, fmt.Errorf("must be between %s and %s, or 0 (off), got %s", minSweepInterval, maxSweepInterval, d)
	}
	return d, nil
}

// maxPOIIDLen is Nexo's bound on MessageHeader.POIID (Max35Text): a longer
// one is refused in every request the POS sends.
const maxPOIIDLen = 35

// poiidFor is the POIID the POS addresses: poiid, or {MODEL}-{SERIAL}.
func (c Config) poiidFor(model, serial string) string {
	if c.POIID != "" {
		return c.POIID
	}
	return model + "-" + serial
}

// poiidProblem says why poiid cannot serve ("" if it can); derived: it was
// made from the model and the serial, not configured.
func poiidProblem(poiid string, derived bool) string {
	if n := utf8.RuneCountInString(poiid); n > maxPOIIDLen {
		if derived {
			return fmt.Sprintf("%q ({MODEL}-{SERIAL}) is %d characters; Nexo allows at most %d: set a shorter poiid", poiid, n, maxPOIIDLen)
		}
		return fmt.Sprintf("%q is %d characters; Nexo allows at most %d", poiid, n, maxPOIIDLen)
	}
	return ""
}
