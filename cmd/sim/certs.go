package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/termagent/termagent/certs"
)

func runCerts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "conf", "output directory")
	serial := fs.String("serial", certs.DefaultSerial, "device serial number (certificate serialNumber attribute and CN)")
	model := fs.String("model", certs.DefaultModel, "device model (CN ingenico-{MODEL}-{SERIAL})")
	key := fs.String("key-type", string(certs.ECDSAP256), "key algorithm: ecdsa (P-256) or rsa (2048)")
	force := fs.Bool("force", false, "replace an existing CA (invalidates every certificate it signed)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	res, err := certs.Generate(certs.Options{Dir: *out, Serial: *serial, Model: *model, Key: certs.KeyType(*key), Force: *force})
	if err != nil {
		return err
	}
	defer fmt.Fprint(stderr, certs.GitWarning(ctx, res.Dir))
	if res.CAReused {
		fmt.Fprintf(stdout, "kept the existing CA in %s (use --force to replace it)\n", res.Dir)
	}
	if len(res.Written) == 0 {
		fmt.Fprintf(stdout, "%s is up to date for device %s\n", res.Dir, res.ClientCN)
		return nil
	}
	fmt.Fprintf(stdout, "wrote %s in %s for device %s\n", strings.Join(res.Written, ", "), res.Dir, res.ClientCN)
	return nil
}
