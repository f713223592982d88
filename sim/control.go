package sim

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// paymentsRoutes registers the qrcode-payment API and its control endpoints:
//
//	POST /control/transactions/{id}/{action}[?args]       the consumer or provider acts:
//	                                                      pay|decline|abandon for every provider,
//	                                                      plus each provider's own (PROVIDERS.md)
//	GET  /control/transactions                            {"transactions":[…],"charges":{serial:n},
//	                                                      "netCharges":{serial:n}} (net: less full refunds)
//	GET  /control/providers                               paymentTypes and their actions, settings
//	                                                      (secret redacted), rejected notifications
//	POST /control/providers/pledg/notifications           a raw Pledg notification, verified like
//	                                                      the provider's own (forgery tests)
//	GET|POST /control/payments/mode                       {"mode":"manual|approve|decline"}
//	GET|POST /control/payments/faults                     PaymentFaults (POST replaces)
//	POST /control/broker/stop|start                       embedded broker outage
//	POST /control/broker/kick/{serial}                    drop a device's MQTT connection
//
// and the adversarial knobs (adversary.go).
func (p *PPaaS) paymentsRoutes() {
	p.pay.routes(p.mux, p.device)
	p.adversaryRoutes()
	p.control.HandleFunc("POST /control/transactions/{id}/{action}", p.handleAct)
	p.control.HandleFunc("GET /control/providers", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, p.pay.describe())
	})
	p.control.HandleFunc("POST /control/providers/pledg/notifications", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, pledgMaxNotification))
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		if err := p.pay.pledgNotify(body); err != nil {
			apiError(w, http.StatusBadRequest, "rejected", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	p.control.HandleFunc("GET /control/transactions", func(w http.ResponseWriter, _ *http.Request) {
		txs, charges := p.pay.list()
		net := map[string]int{}
		for i := range txs {
			net[txs[i].Serial] += netCharges(&txs[i])
		}
		writeJSON(w, http.StatusOK, map[string]any{"transactions": txs, "charges": charges, "netCharges": net})
	})
	p.control.HandleFunc("GET /control/payments/mode", func(w http.ResponseWriter, _ *http.Request) {
		p.pay.mu.Lock()
		m := p.pay.mode
		p.pay.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]ProviderMode{"mode": m})
	})
	p.control.HandleFunc("POST /control/payments/mode", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Mode ProviderMode `json:"mode"`
		}
		if err := decodeControl(w, r, 1024, &in); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "mode: "+err.Error())
			return
		}
		if err := p.SetProviderMode(in.Mode); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, in)
	})
	p.control.HandleFunc("GET /control/payments/faults", func(w http.ResponseWriter, _ *http.Request) {
		p.pay.mu.Lock()
		f := p.pay.faults
		p.pay.mu.Unlock()
		writeJSON(w, http.StatusOK, f)
	})
	p.control.HandleFunc("POST /control/payments/faults", func(w http.ResponseWriter, r *http.Request) {
		var f PaymentFaults
		if err := decodeControl(w, r, 1024, &f); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "payment faults: "+err.Error())
			return
		}
		p.SetPaymentFaults(f)
		writeJSON(w, http.StatusOK, f)
	})
	p.control.HandleFunc("POST /control/broker/{op}", func(w http.ResponseWriter, r *http.Request) {
		var err error
		switch r.PathValue("op") {
		case "stop":
			err = p.StopBroker()
		case "start":
			err = p.StartBroker()
		default:
			apiError(w, http.StatusNotFound, "not_found", "broker operation is stop or start")
			return
		}
		if err != nil {
			apiError(w, http.StatusConflict, "broker", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"broker": r.PathValue("op")})
	})
	p.control.HandleFunc("POST /control/broker/kick/{serial}", func(w http.ResponseWriter, r *http.Request) {
		if err := p.KickDevice(r.PathValue("serial")); err != nil {
			apiError(w, http.StatusConflict, "broker", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"kicked": r.PathValue("serial")})
	})
}

// decodeControl reads a control API body of at most limit bytes into v,
// refusing a field v does not have (naming it) rather than ignoring a typo.
func decodeControl(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// errSuffix is ": err" for a message that names what was expected, "" without an error.
func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

func (p *PPaaS) handleAct(w http.ResponseWriter, r *http.Request) {
	tx, err := p.pay.act(r.PathValue("id"), r.PathValue("action"), r.URL.Query())
	switch {
	case errors.Is(err, ErrNoTransaction):
		apiError(w, http.StatusNotFound, "not_found", err.Error())
	case err != nil:
		apiError(w, http.StatusConflict, "invalid_state", err.Error())
	default:
		p.log.Info("consumer acted", "action", r.PathValue("action"), "ppaas_transaction", tx.TransactionID, "poi_transaction", tx.ClientTransactionID, "status", tx.Status)
		writeJSON(w, http.StatusOK, tx)
	}
}

// initPayments builds the qrcode-payment side; New calls it before routes.
func (p *PPaaS) initPayments() error {
	c := p.cfg.Payments
	pay, err := newPayments(p.log, p.cfg.Now, c.Provider, c.Providers)
	if err != nil {
		return fmt.Errorf("simulated PPaaS: %w", err)
	}
	pay.busy, pay.spans = &p.apiNanos, &p.paymentBusy
	p.pay = pay
	p.faults.orderOf = pay.orderOf
	if c.ExternalMQTTURL != "" {
		p.broker = newExternalBroker(p.log, c.ExternalMQTTURL, c.ExternalMQTTUsername, c.ExternalMQTTPassword, p.brokerClientTLS())
		return nil
	}
	addr := c.MQTTAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	p.broker = &embeddedBroker{log: p.log, tls: p.TLSConfig(), verify: p.VerifyToken, addr: addr}
	return nil
}

// brokerClientTLS trusts the development CA for the simulator's own
// connection to an external broker.
func (p *PPaaS) brokerClientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.tls.ClientCAs, MinVersion: tls.VersionTLS12}
}

// startPayments starts the broker (or its client) and the event publisher.
func (p *PPaaS) startPayments() error {
	if err := p.broker.start(); err != nil {
		return fmt.Errorf("simulated PPaaS: %w", err)
	}
	p.pay.start(p.broker)
	p.log.Info("simulated PPaaS events", "mqtt", p.broker.url(), "provider", p.pay.mode)
	return nil
}

// closePayments stops the publisher, then the broker.
func (p *PPaaS) closePayments() error {
	p.pay.close()
	return p.broker.stop()
}

// MQTTURL is the broker devices subscribe to, e.g. ssl://127.0.0.1:8883.
func (p *PPaaS) MQTTURL() string { return p.broker.url() }

// Act makes the consumer act on a transaction: "pay", "decline" or "abandon"
// for every provider, or one of the provider's own actions (PROVIDERS.md).
func (p *PPaaS) Act(id, action string) (SimTransaction, error) { return p.pay.act(id, action, nil) }

// ActArgs is Act with arguments, e.g. Pledg's shares with n=3.
func (p *PPaaS) ActArgs(id, action string, args url.Values) (SimTransaction, error) {
	return p.pay.act(id, action, args)
}

// RejectedNotifications counts provider notifications dropped because their
// signature did not verify.
func (p *PPaaS) RejectedNotifications() int {
	p.pay.mu.Lock()
	defer p.pay.mu.Unlock()
	return p.pay.rejected
}

// Transactions lists the QR transactions and the approved charges per serial.
func (p *PPaaS) Transactions() ([]SimTransaction, map[string]int) { return p.pay.list() }

// Transaction is the simulator's record of the transaction whose PPaaS id,
// or else whose clientTransactionId, is id.
func (p *PPaaS) Transaction(id string) (SimTransaction, bool) {
	p.pay.mu.Lock()
	defer p.pay.mu.Unlock()
	if tx, ok := p.pay.byID[id]; ok {
		return *tx, true
	}
	for _, tx := range p.pay.byID {
		if tx.ClientTransactionID == id {
			return *tx, true
		}
	}
	return SimTransaction{}, false
}

// SetProviderMode switches every provider between manual (control API),
// approve and decline (each provider's own pay or decline right after create).
func (p *PPaaS) SetProviderMode(m ProviderMode) error {
	switch m {
	case ProviderManual, ProviderApprove, ProviderDecline:
	default:
		return fmt.Errorf("provider mode %q is not manual, approve or decline", m)
	}
	p.pay.mu.Lock()
	p.pay.mode = m
	p.pay.mu.Unlock()
	return nil
}

// SetPaymentFaults replaces the qrcode-payment fault knobs.
func (p *PPaaS) SetPaymentFaults(f PaymentFaults) {
	p.pay.mu.Lock()
	p.pay.faults = f
	p.pay.mu.Unlock()
}

// StopBroker stops the embedded broker (an outage); events published meanwhile are lost.
func (p *PPaaS) StopBroker() error { return p.broker.stop() }

// StartBroker restarts the embedded broker on the same address.
func (p *PPaaS) StartBroker() error { return p.broker.start() }

// KickDevice drops a device's MQTT connection, so it must reconnect (with a
// fresh token).
func (p *PPaaS) KickDevice(serial string) error { return p.broker.kick(serial) }

// checkControlAddr refuses a control API address that is not loopback unless
// insecure: the control API has no authentication.
func checkControlAddr(addr string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("simulated PPaaS: control address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host == "localhost" || (ip != nil && ip.IsLoopback()) || insecure {
		return nil
	}
	return fmt.Errorf("simulated PPaaS: refusing to serve the control API on %s: it is not a loopback address and the control API has no authentication (-control-insecure to do it anyway)", addr)
}

// guardControl protects the control API from the web pages a developer has
// open: a cross-origin request that changes something (judged by
// Sec-Fetch-Site, else Origin against Host) is refused, and so is one whose
// body is not declared JSON, which a page cannot send cross-origin without a
// preflight the control API never grants. The virtual terminal's page is
// served from the control API itself, so its buttons are same-origin.
func guardControl(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		apiError(w, http.StatusForbidden, "cross_origin", "cross-origin requests to the control API are refused")
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions && r.Method != http.MethodDelete {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				apiError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type: application/json is required")
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
}
