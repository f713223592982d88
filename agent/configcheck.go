package agent

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/ppaas"
)

// CheckReport is what `agent config check` found, for people.
type CheckReport struct {
	Lines []string // "cert    conf/client.pem: serial …", in a stable order
}

// Check validates the configuration and everything it points to that can be
// checked without the network: the fields (Validate), the files (present,
// readable, private keys not readable by others), the device certificate
// (parsed, valid now, matching its key, carrying a serial number), the CA
// bundle and the Nexo server's certificate. It returns every problem, each
// naming its field, flag and variable, and otherwise what it found.
func (c Config) Check(now time.Time) (CheckReport, error) {
	var rep CheckReport
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	line := func(label, format string, args ...any) {
		rep.Lines = append(rep.Lines, fmt.Sprintf("%-9s %s", label, fmt.Sprintf(format, args...)))
	}
	filesOK, ferrs := c.checkFiles()
	errs = append(errs, ferrs...)
	caOK := false
	if filesOK["ca"] {
		if desc, err := describeCA(c.CA, now); err != nil {
			bad("ca", "%v", err)
		} else {
			caOK = true
			line("ca", "%s", desc)
		}
	}
	if !c.usesClientCertificate() { // demo-custom-token: no device certificate
		if c.Serial != "" && c.Model != "" {
			if p := poiidProblem(c.poiidFor(c.Model, c.Serial), c.POIID == ""); p != "" {
				bad("poiid", "%s", p)
			}
			c.describeEndpoints(line, c.Serial)
		}
	} else if filesOK["cert"] && filesOK["key"] && caOK {
		dev, err := mtls.LoadDeviceTLS(mtls.TLSFiles{Cert: c.Cert, Key: c.Key, CA: c.CA}, func() time.Time { return now })
		if err != nil {
			bad("cert", "%v", err)
		} else {
			leaf := dev.Leaf()
			serial, model, err := mtls.Serial(leaf)
			if c.Serial != "" {
				serial, err = c.Serial, nil
			}
			if c.Model != "" {
				model = c.Model
			}
			if err != nil {
				bad("serial", "%v (set serial and model)", err)
			}
			line("cert", "%s: serial %s, model %s, CN %s, issued by %s, expires %s (in %d days)",
				c.Cert, serial, model, leaf.Subject.CommonName, leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly), int(leaf.NotAfter.Sub(now).Hours()/24))
			line("key", "%s: private (mode 0600 or stricter), matches the certificate", c.Key)
			if serial != "" {
				if p := poiidProblem(c.poiidFor(model, serial), c.POIID == ""); p != "" {
					bad("poiid", "%s", p)
				}
				c.describeEndpoints(line, serial)
			}
		}
	}
	if filesOK["nexo_cert"] && filesOK["nexo_key"] {
		if pair, err := mtls.LoadKeyPair(c.NexoCert, c.NexoKey); err != nil {
			bad("nexo_cert", "%v", err)
		} else if pair.Leaf != nil {
			names := pair.Leaf.DNSNames
			for _, ip := range pair.Leaf.IPAddresses {
				names = append(names, ip.String())
			}
			if len(names) == 0 {
				bad("nexo_cert", "%s names no host (no DNS or IP subject alternative name): a POS that checks the POI's host name refuses it", c.NexoCert)
			}
			line("nexo", "https://%s/nexo with %s (%s, expires %s)", c.NexoListen, c.NexoCert, strings.Join(names, ", "), pair.Leaf.NotAfter.UTC().Format(time.DateOnly))
		}
	} else if c.NexoPlainHTTP {
		line("nexo", "http://%s/nexo (plain HTTP: loopback testing only)", c.NexoListen)
	}
	return rep, errors.Join(errs...)
}

// configFile is a file the configuration names.
type configFile struct {
	field, path string
	private     bool // a private key: mode 0600 or stricter
}

func (c Config) files() []configFile {
	files := []configFile{{"ca", c.CA, false}} // optional without a client certificate: "" is the system roots
	if c.usesClientCertificate() {
		files = append(files, configFile{"cert", c.Cert, false}, configFile{"key", c.Key, true})
	}
	if !c.NexoPlainHTTP {
		files = append(files, configFile{"nexo_cert", c.NexoCert, false}, configFile{"nexo_key", c.NexoKey, true})
	}
	return files
}

// checkFiles reports, for each file field, whether the file is there with
// the right mode, and the problems of the others.
func (c Config) checkFiles() (map[string]bool, []error) {
	ok := map[string]bool{}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for _, f := range c.files() {
		if f.path == "" {
			continue // Validate reports it
		}
		st, err := os.Stat(f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, &missingFileError{FieldError{Field: f.field, Msg: fmt.Sprintf("%s: %v", f.path, fs.ErrNotExist)}})
		case err != nil:
			bad(f.field, "%v", err)
		case !st.Mode().IsRegular():
			bad(f.field, "%s: not a regular file", f.path)
		case f.private && st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows":
			bad(f.field, "%s: mode %04o lets other users read the private key; want 0600 (chmod 600 %s)", f.path, st.Mode().Perm(), f.path)
		default:
			ok[f.field] = true
		}
	}
	return ok, errs
}

// missingFileError is a FieldError that is also fs.ErrNotExist.
type missingFileError struct{ FieldError }

func (e *missingFileError) Unwrap() error { return fs.ErrNotExist }

// CheckFiles reports the files the configuration names that are missing or
// have the wrong mode, each error naming its field, flag and variable; the
// agent checks them before starting so that the first error says which
// setting to fix.
func (c Config) CheckFiles() error {
	_, errs := c.checkFiles()
	return errors.Join(errs...)
}

// describeEndpoints adds the URLs the agent will call, resolved from the
// base URLs and the serial.
func (c Config) describeEndpoints(line func(string, string, ...any), serial string) {
	if c.Grant == GrantDemoCustomToken {
		line("auth", "%s (merchant login), then %s (device token, demo only)", c.MerchantTokenURL, c.CustomTokenURL)
	} else {
		line("auth", "%s?serial_number=%s (merchant credentials), then %s (%s grant)", c.CredentialsURL, serial, c.TokenURL, c.Grant)
	}
	line("api", "%s/qrcode-payment/v1/transactions", strings.TrimSuffix(c.APIURL, "/"))
	if c.MQTTURL == "" {
		line("mqtt", "none: the agent polls transaction statuses")
	} else {
		line("mqtt", "%s, topic %s", c.MQTTURL, ppaas.EventTopic(serial))
	}
}

// FileJSON writes the configuration as a -config file: every key in the
// order of the Config struct, durations as strings ("2m0s"), and secrets
// left out (a "// key" comment says whether one is set), so the output of
// `agent config check` can be saved and used as it is.
func (c Config) FileJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	rv := reflect.ValueOf(c)
	rt := rv.Type()
	first := true
	entry := func(k string, v []byte) {
		if !first {
			b.WriteString(",\n")
		}
		first = false
		kb, _ := json.Marshal(k)
		fmt.Fprintf(&b, "  %s: %s", kb, v)
	}
	for i := range rt.NumField() {
		f := rt.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fv := rv.Field(i)
		var v any = fv.Interface()
		if f.Tag.Get("secret") == "true" {
			state := "not set"
			if !fv.IsZero() {
				state = "set, not printed"
			}
			js, _ := json.Marshal(fmt.Sprintf("%s (%s, or this key)", state, envName(name)))
			entry("// "+name, js)
			continue
		}
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		js, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
		entry(name, js)
	}
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}

// knownKeys are the configuration's JSON keys, in field order.
func knownKeys() []string {
	rt := reflect.TypeFor[Config]()
	keys := make([]string, 0, rt.NumField())
	for i := range rt.NumField() {
		if name := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]; name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// UnknownKeyError is a configuration file key or a flag that does not exist.
type UnknownKeyError struct {
	Key     string // as written: paymnet_timeout, or paymnet-timeout for a flag
	Flag    bool
	Suggest string // the closest known key or flag, if one is close
}

func (e *UnknownKeyError) Error() string {
	what, key, suggest := "key", fmt.Sprintf("%q", e.Key), fmt.Sprintf("%q", e.Suggest)
	if e.Flag {
		what, key, suggest = "flag", "-"+e.Key, "-"+e.Suggest
	}
	s := fmt.Sprintf("unknown %s %s", what, key)
	if e.Suggest != "" {
		s += fmt.Sprintf(" (did you mean %s?)", suggest)
	}
	return s
}

// unknownKey builds the error for key, suggesting the closest known one.
func unknownKey(key string, flag bool) error {
	known := knownKeys()
	if flag {
		for i, k := range known {
			known[i] = flagName(k)
		}
		known = append(known, "config")
	}
	return &UnknownKeyError{Key: key, Flag: flag, Suggest: closest(key, known)}
}

// parseFlags parses fs's flags wherever they appear among args (`agent run
// -log-level debug` as `agent -log-level debug run`), returning the other
// arguments in order; an undefined flag is an UnknownKeyError.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
				return nil, unknownKey(name, true)
			}
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return words, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(words, rest...), nil
		}
		words = append(words, rest[0])
		args = rest[1:]
	}
}

// closest returns the known name nearest to s (edit distance at most a
// third of its length, at least 1), or "".
func closest(s string, known []string) string {
	best, bestD := "", max(1, len(s)/3)+1
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (with transpositions, the
// commonest typo) between a and b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// describeCA reads the CA bundle that verifies PPaaS's certificate: what it
// holds, or why it cannot serve (no certificate, none of them a CA or
// self-signed, every one expired: a device's own certificate given as the
// bundle, say).
func describeCA(path string, now time.Time) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var certs, cas, valid int
	var names []string
	for len(b) > 0 {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("%s: certificate %d: %w", path, certs+1, err)
		}
		certs++
		// A trust anchor: a CA, or a self-signed certificate pinned as its
		// own root (Go verifies with either; roots need no CA flag).
		selfSigned := bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
		if cert.BasicConstraintsValid && cert.IsCA || selfSigned {
			cas++
			if now.Before(cert.NotAfter) && now.After(cert.NotBefore) {
				valid++
				if len(names) < 3 {
					names = append(names, cert.Subject.CommonName)
				}
			}
		}
	}
	switch {
	case certs == 0:
		return "", fmt.Errorf("%s: no PEM certificates", path)
	case cas == 0:
		return "", fmt.Errorf("%s: none of its %d certificates is a CA or self-signed (a device or server certificate, not the bundle that verifies PPaaS?)", path, certs)
	case valid == 0:
		return "", fmt.Errorf("%s: every CA certificate in it has expired or is not valid yet", path)
	}
	return fmt.Sprintf("%s: %d CA certificates valid now (%s), PPaaS's certificate must chain to one", path, valid, strings.Join(names, ", ")), nil
}

// UnknownEnv names the TERMAGENT_* variables in environ (os.Environ) that no
// setting reads, each with the closest one it may be a typo of: such a
// variable is ignored, and a misspelled secret (TERMAGENT_NEXO_PASSPHRSE)
// would otherwise leave its setting at its default without a word.
func UnknownEnv(environ []string) []string {
	known := map[string]bool{"TERMAGENT_CONFIG": true, failpoint.EnvVar: true} // failpoint's: test builds only
	keys := knownKeys()
	for _, k := range keys {
		known[envName(k)] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "TERMAGENT_") || known[name] {
			continue
		}
		msg := fmt.Sprintf("environment variable %s is not a setting and is ignored", name)
		if c := closest(strings.ToLower(strings.TrimPrefix(name, "TERMAGENT_")), keys); c != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", envName(c))
		}
		out = append(out, msg)
	}
	return out
}
