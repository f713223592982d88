package main

// issue 16: sim pos -cloud, a cloud POS driving the platform's Retail API.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

type cloudOptions struct {
	base, key, poiid, saleID string
	poiSet, xml, list        bool
}

// cloudPOS opens a Retail API session to the device and returns a v5 POS on
// it; with list it prints the store's devices and returns nil.
func cloudPOS(ctx context.Context, o cloudOptions, local *nexo.Client, stdout io.Writer) (*world.POS, error) {
	if o.xml {
		return nil, errors.New("-cloud speaks Nexo v5 JSON; -xml is for the local 3.x path")
	}
	if o.key == "" {
		o.key = os.Getenv("TERMAGENT_RETAIL_KEY")
	}
	rc := &world.RetailClient{BaseURL: o.base, Key: o.key, HTTP: local.HTTP}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	devs, err := rc.Devices(cctx)
	if err != nil {
		return nil, fmt.Errorf("-cloud %s: %w", o.base, err)
	}
	if o.list {
		if len(devs) == 0 {
			fmt.Fprintln(stdout, "no device has connected to the relay yet (the agent's cloud_url)")
		}
		for _, d := range devs {
			state := "offline"
			if d.Connected {
				state = "connected"
			}
			fmt.Fprintf(stdout, "%s  %s  %s\n", d.DeviceID, state, strings.Join(d.PaymentMethods, ","))
		}
		return nil, nil
	}
	var dev *sim.RetailDevice
	var connected []sim.RetailDevice
	for i := range devs {
		if devs[i].DeviceID == o.poiid {
			dev = &devs[i]
		}
		if devs[i].Connected {
			connected = append(connected, devs[i])
		}
	}
	if dev == nil && !o.poiSet && len(connected) == 1 {
		dev = &connected[0]
	}
	if dev == nil {
		return nil, fmt.Errorf("-cloud: no device %q in the store (%d listed; see `%s pos -cloud %s devices`)", o.poiid, len(devs), progName(), o.base)
	}
	sess, err := rc.Open(cctx, dev.DeviceID, o.saleID, "")
	if err != nil {
		return nil, fmt.Errorf("-cloud: open a session to %s: %w", dev.DeviceID, err)
	}
	fmt.Fprintf(stdout, "Cloud session %s to %s (Nexo v5 through %s)\n", sess.SessionID, dev.DeviceID, o.base)
	p := rc.POS(sess)
	p.Client.Key = local.Key
	if local.HTTP != nil {
		p.Client.HTTP.Timeout = local.HTTP.Timeout
	}
	return p, nil
}
