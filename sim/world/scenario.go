package world

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
)

// Scenario is a scripted story against a fresh simulated world (PPaaS, broker,
// one agent): POS requests, consumer actions, injected faults, and the outcomes
// they must lead to. The files in scenarios/ are its JSON form; `sim run` and
// the tests run them.
//
//	{"name": "KB approved",
//	 "steps": [
//	   {"pos": "pay", "amount": "12.50", "currency": "EUR", "brand": "KB", "serviceId": "S1"},
//	   {"await": "awaiting_consumer"},
//	   {"consumer": "pay"},
//	   {"expect": {"result": "Success", "amount": "12.50"}},
//	   {"pos": "status", "serviceId": "S1", "expect": {"result": "Success"}},
//	   {"expectCharges": 1}]}
type Scenario struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Settings    ScenarioSettings `json:"settings"`
	// Timeout bounds the whole scenario (default 60 s).
	Timeout sim.Duration `json:"timeout,omitempty"`
	Steps   []Step       `json:"steps"`
}

// ScenarioSettings configure the world a scenario runs in. Zero values take
// defaults chosen to keep scenarios fast (noted per field).
type ScenarioSettings struct {
	PaymentTimeout sim.Duration     `json:"paymentTimeout,omitempty"` // the agent's; default 20 s
	EventWait      sim.Duration     `json:"eventWait,omitempty"`      // the agent's poll fallback; default 1 s
	TokenTTL       sim.Duration     `json:"tokenTtl,omitempty"`       // default 300 s
	ProviderMode   sim.ProviderMode `json:"providerMode,omitempty"`   // manual (default), approve, decline
	// Provider settings (PROVIDERS.md); defaults in milliseconds rather than
	// the seeds' minutes.
	PennymaticConfirmDelay sim.Duration `json:"pennymaticConfirmDelay,omitempty"` // default 200 ms
	PledgShares            int          `json:"pledgShares,omitempty"`            // default 2
	PledgDeadline          sim.Duration `json:"pledgDeadline,omitempty"`          // default 48 h
	PledgSigning           string       `json:"pledgSigning,omitempty"`           // sha256 (default) or jwt
	KTWidgetRetryScale     float64      `json:"ktwidgetRetryScale,omitempty"`     // default 0.001 (15 s → 15 ms)
	KTWidgetLostAcks       int          `json:"ktwidgetLostAcks,omitempty"`       // default 1; negative: none
	KTWidgetClearingDelay  sim.Duration `json:"ktwidgetClearingDelay,omitempty"`  // default 50 ms
	// PennymaticPaidStatus is the PPaaS status of a Pennymatic payment paid
	// but not yet confirmed on the blockchain: pending (default) or confirming.
	PennymaticPaidStatus string `json:"pennymaticPaidStatus,omitempty"`
	// Cloud connects the agent to the Retail API relay and opens a cloud
	// POS session (SaleID CLOUD), for pos steps with "via": "cloud" (issue 16).
	Cloud bool `json:"cloud,omitempty"`
	// AgentConfig overrides agent configuration keys (the JSON names of the
	// configuration file, e.g. "payment_timeout" in nanoseconds), after the
	// settings above.
	AgentConfig map[string]json.RawMessage `json:"agentConfig,omitempty"`
}

// Step is one line of a scenario. Exactly one of POS, Await, Consumer, Fault,
// Expect (alone), ExpectCharges, ExpectNetCharges, ExpectPPaaS and Wait says
// what it does; the other fields are its parameters.
type Step struct {
	// POS sends a Nexo request: pay, reverse, abort, status, diagnosis, login,
	// logout. A pay without Expect runs in the background (the consumer acts
	// meanwhile); a later Expect step waits for its response.
	POS       string `json:"pos,omitempty"`
	Amount    string `json:"amount,omitempty"`    // pay: major units, e.g. "12.50"
	Currency  string `json:"currency,omitempty"`  // pay: ISO 4217
	Brand     string `json:"brand,omitempty"`     // pay: AllowedPaymentBrand, e.g. KB, PLEDG
	ServiceID string `json:"serviceId,omitempty"` // pay: the request's (default generated); others: the payment meant (default the last)
	// Original (refund, and reverse with an amount): the serviceId of the pay
	// step refunded (default the last); ServiceID is then the request's own.
	Original string `json:"original,omitempty"`

	// Await waits until the terminal shows this state (awaiting_consumer,
	// pending, approved, declined, …) after the screens already awaited;
	// "cancelled|expired" accepts either.
	Await string `json:"await,omitempty"`

	// Consumer is an action on the transaction the terminal shows: pay,
	// decline, abandon, or a provider's own (PROVIDERS.md), with Args.
	Consumer string            `json:"consumer,omitempty"`
	Args     map[string]string `json:"args,omitempty"`

	// Scan is a code the consumer's wallet shows (merchantscan): on a pos pay
	// step the POS's scanner read it and it travels with the request; alone,
	// the terminal's scanner reads it (the virtual terminal's scan field) for
	// the payment waiting for one. ScanError, on a terminal scan, is text the
	// refusal of the scan must contain (the scan must then be refused).
	Scan      string `json:"scan,omitempty"`
	ScanError string `json:"scanError,omitempty"`

	Fault *StepFault `json:"fault,omitempty"`

	// Expect checks a response: with POS, that request's; alone, the response
	// of the payment ServiceID (default the last) started earlier.
	Expect *Expect `json:"expect,omitempty"`

	// ExpectCharges is the number of approved charges the simulated PPaaS must
	// hold for the terminal (waited for up to the step's timeout).
	ExpectCharges *int `json:"expectCharges,omitempty"`
	// ExpectNetCharges is the number of charges that still stand: approved
	// charges less the transactions refunded in full (waited for likewise).
	ExpectNetCharges *int `json:"expectNetCharges,omitempty"`
	// ExpectPPaaS checks PPaaS's own record of the payment ServiceID (default
	// the last), waiting up to the step's timeout (default 10 s) for it to hold.
	ExpectPPaaS *ExpectPPaaS `json:"expectPPaaS,omitempty"`
	// Wait does nothing for this long (a clock, a timeout or a retry runs).
	Wait sim.Duration `json:"wait,omitempty"`
	// ExpectPOSEvent checks the EventNotifications the POS received about
	// payment ServiceID (scenario_aftersale.go).
	ExpectPOSEvent *ExpectPOSEvent `json:"expectPOSEvent,omitempty"`

	// RetryFor repeats a POS request other than pay until its Expect holds,
	// for up to this long (e.g. a diagnosis until the agent is back online).
	RetryFor sim.Duration `json:"retryFor,omitempty"`

	// Timeout bounds this step (default: what is left of the scenario's).
	Timeout sim.Duration `json:"timeout,omitempty"`

	// Via "cloud" sends a pos step as Nexo v5 through the Retail API (needs
	// settings.cloud); empty: Nexo 3.x to the agent's /nexo (issue 16).
	Via string `json:"via,omitempty"`
}

// StepFault injects faults; every knob set in one step is applied, in the
// order of the fields.
type StepFault struct {
	// An HTTP fault on the mTLS API: requests whose path starts with Path
	// (and method is Method) get Status or a reset connection after Latency,
	// Count times (0: until cleared).
	Path    string       `json:"path,omitempty"`
	Method  string       `json:"method,omitempty"`
	Status  int          `json:"status,omitempty"`
	Reset   bool         `json:"reset,omitempty"`
	Latency sim.Duration `json:"latency,omitempty"`
	Count   int          `json:"count,omitempty"`
	// Suffix narrows (or, without Path, sets) the requests an HTTP fault
	// applies to: those whose path ends so, e.g. "/refund" apart from "/cancel".
	Suffix string `json:"suffix,omitempty"`
	// Payment aims an HTTP fault at one payment: the requests on the PPaaS
	// transaction of the pay step with this serviceId (status reads, cancel,
	// refund), even if that pay comes later in the scenario.
	Payment string `json:"payment,omitempty"`

	// qrcode-payment knobs (PaymentFaults); setting any replaces them all.
	CreateErrors    int          `json:"createErrors,omitempty"`
	DropEvents      int          `json:"dropEvents,omitempty"`
	DuplicateEvents int          `json:"duplicateEvents,omitempty"`
	ReorderEvents   int          `json:"reorderEvents,omitempty"`
	DelayEvents     int          `json:"delayEvents,omitempty"`
	EventDelay      sim.Duration `json:"eventDelay,omitempty"`

	// Platform knobs.
	ClockSkew     *sim.Duration    `json:"clockSkew,omitempty"`     // the simulator's clock offset ("0s" removes it)
	ExpireTokens  bool             `json:"expireTokens,omitempty"`  // every token issued so far is refused
	RevokeDevice  bool             `json:"revokeDevice,omitempty"`  // the terminal's credentials are revoked
	RestoreDevice bool             `json:"restoreDevice,omitempty"` // … and restored
	Broker        string           `json:"broker,omitempty"`        // stop, start or kick (drop the terminal's connection)
	ProviderMode  sim.ProviderMode `json:"providerMode,omitempty"`  // manual, approve or decline from now on
	ClearHTTP     bool             `json:"clearHttp,omitempty"`     // remove the HTTP faults
	ClearPayments bool             `json:"clearPayments,omitempty"` // reset the qrcode-payment knobs

	// Adversarial PPaaS knobs.
	// StatusSpellings rewrites statuses in PPaaS's answers and events, e.g.
	// {"approved": "AUTHORIZED"}; {} restores them.
	StatusSpellings map[string]string `json:"statusSpellings,omitempty"`
	// Refunds is how refunds complete from now on: sync (default) or async
	// (answered pending, completed after RefundDelay or by CompleteRefunds).
	Refunds     string       `json:"refunds,omitempty"`
	RefundDelay sim.Duration `json:"refundDelay,omitempty"`
	// CompleteRefunds completes every pending refund now.
	CompleteRefunds bool `json:"completeRefunds,omitempty"`
	// AgentClock sets the agent's local clock to real time plus this offset
	// ("48h" forward, "-2h" back, "0s" right again).
	AgentClock *sim.Duration `json:"agentClock,omitempty"`

	// Retail replaces the Retail API relay's faults (issue 16).
	Retail *sim.RetailFaults `json:"retail,omitempty"`
}

// ExpectPPaaS is what PPaaS's record of one payment must show. Empty fields
// are not checked; amounts are in major units of the payment's currency.
type ExpectPPaaS struct {
	Status   string `json:"status,omitempty"`   // PPaaS's true status (not a rewritten spelling)
	Charged  string `json:"charged,omitempty"`  // the amount taken from the consumer: the payment's, once approved; "0" if never
	Refunded string `json:"refunded,omitempty"` // refundedAmount: completed refunds only
	Charges  *int   `json:"charges,omitempty"`  // moves to approved (more than 1 is a double charge)
	// RefundPending is the amount of refunds accepted but not completed
	// (asynchronous refunds).
	RefundPending string `json:"refundPending,omitempty"`
}

// Expect is what a Nexo response must show. Empty fields are not checked.
type Expect struct {
	Result         string `json:"result,omitempty"`         // Success, Failure or Partial
	ErrorCondition string `json:"errorCondition,omitempty"` // e.g. Refusal, Aborted, Cancel, NotFound
	Message        string `json:"message,omitempty"`        // a substring of AdditionalResponse
	Amount         string `json:"amount,omitempty"`         // the authorized amount, major units
	Brand          string `json:"brand,omitempty"`
	// NotMessage must not be a substring of AdditionalResponse.
	NotMessage string `json:"notMessage,omitempty"`
	// RepeatedResult is a TransactionStatus's original response result.
	RepeatedResult string `json:"repeatedResult,omitempty"`
	// Repeated checks the original response inside a TransactionStatus
	// answer (RepeatedMessageResponse) field by field.
	Repeated *Expect `json:"repeated,omitempty"`
	// Hosts is a Diagnosis's reachability of the named hosts: PPaaS-auth,
	// PPaaS-API, PPaaS-MQTT, PPaaS-cloud.
	Hosts map[string]bool `json:"hosts,omitempty"`
	// Net (GetTotals, Reconciliation) is what the totals took, per currency,
	// e.g. "12.50 EUR" ("none" for no transactions); ReconciliationID is the
	// POIReconciliationID; Receipts counts a reprint's receipts.
	Net              string `json:"net,omitempty"`
	ReconciliationID string `json:"reconciliationId,omitempty"`
	Receipts         int    `json:"receipts,omitempty"`
	// Failed: the POS got no Nexo answer, its call failed with an error
	// containing this (e.g. "502": the relay lost the device) (issue 16).
	Failed string `json:"failed,omitempty"`
}

// ScenarioError is a scenario file problem or a failed step; it names the
// step (1-based; 0 for the scenario itself) and the field.
type ScenarioError struct {
	Scenario string
	Step     int
	Kind     string // the step's action, e.g. "pos pay", "await"
	Field    string
	Msg      string
}

func (e *ScenarioError) Error() string {
	var b strings.Builder
	if e.Scenario != "" {
		fmt.Fprintf(&b, "scenario %q: ", e.Scenario)
	}
	if e.Step > 0 {
		fmt.Fprintf(&b, "step %d", e.Step)
		if e.Kind != "" {
			fmt.Fprintf(&b, " (%s)", e.Kind)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ParseScenario decodes and validates a scenario file. Every problem is a
// *ScenarioError (joined) naming the step and the field.
func ParseScenario(data []byte) (*Scenario, error) {
	var raw struct {
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Settings    json.RawMessage   `json:"settings"`
		Timeout     sim.Duration      `json:"timeout"`
		Steps       []json.RawMessage `json:"steps"`
	}
	if err := strictDecode(data, &raw); err != nil {
		return nil, &ScenarioError{Msg: err.Error()}
	}
	sc := &Scenario{Name: raw.Name, Description: raw.Description, Timeout: raw.Timeout}
	var errs []error
	if len(raw.Settings) > 0 && string(raw.Settings) != "null" {
		if err := strictDecode(raw.Settings, &sc.Settings); err != nil {
			errs = append(errs, &ScenarioError{Scenario: sc.Name, Field: "settings", Msg: err.Error()})
		}
	}
	sc.Steps = make([]Step, len(raw.Steps))
	for i, r := range raw.Steps {
		if err := strictDecode(r, &sc.Steps[i]); err != nil {
			errs = append(errs, &ScenarioError{Scenario: sc.Name, Step: i + 1, Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return sc, nil
}

// strictDecode decodes one JSON value, refusing unknown fields and trailing data.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

var (
	posActions    = []string{"pay", "reverse", "abort", "status", "diagnosis", "login", "logout", "totals", "reconcile", "sync", "receipt", "refund"}
	ppaasStates   = []string{"created", "awaiting_consumer", "pending", "confirming", "approved", "declined", "cancelled", "expired", "refunded"}
	screenStates  = []string{"idle", "created", "awaiting_consumer", "pending", "approved", "declined", "cancelled", "expired", "refunded", "unknown", "message", "confirming", "awaiting_scan"}
	nexoResults   = []string{string(nexo.Success), string(nexo.Failure), string(nexo.Partial)}
	brokerActions = []string{"stop", "start", "kick"}
)

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// Validate checks a scenario without running it.
func (sc *Scenario) Validate() error {
	var errs []error
	bad := func(step int, kind, field, format string, args ...any) {
		errs = append(errs, &ScenarioError{Scenario: sc.Name, Step: step, Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(sc.Name) == "" {
		bad(0, "", "name", "is required")
	}
	if len(sc.Steps) == 0 {
		bad(0, "", "steps", "at least one step is required")
	}
	if sc.Timeout < 0 {
		bad(0, "", "timeout", "must not be negative")
	}
	st := sc.Settings
	for field, d := range map[string]sim.Duration{"paymentTimeout": st.PaymentTimeout, "eventWait": st.EventWait, "tokenTtl": st.TokenTTL,
		"pennymaticConfirmDelay": st.PennymaticConfirmDelay, "pledgDeadline": st.PledgDeadline, "ktwidgetClearingDelay": st.KTWidgetClearingDelay} {
		if d < 0 {
			bad(0, "", "settings."+field, "must not be negative")
		}
	}
	if st.ProviderMode != "" && !oneOf(string(st.ProviderMode), []string{"manual", "approve", "decline"}) {
		bad(0, "", "settings.providerMode", "want manual, approve or decline, got %q", st.ProviderMode)
	}
	if st.PledgSigning != "" && st.PledgSigning != sim.PledgSHA256 && st.PledgSigning != sim.PledgJWT {
		bad(0, "", "settings.pledgSigning", "want %s or %s, got %q", sim.PledgSHA256, sim.PledgJWT, st.PledgSigning)
	}
	if st.PledgShares < 0 || st.PledgShares > 10 {
		bad(0, "", "settings.pledgShares", "want 1 to 10, got %d", st.PledgShares)
	}
	if st.KTWidgetRetryScale < 0 {
		bad(0, "", "settings.ktwidgetRetryScale", "must not be negative")
	}
	if v := st.PennymaticPaidStatus; v != "" && v != string(ppaas.Pending) && v != string(ppaas.Confirming) {
		bad(0, "", "settings.pennymaticPaidStatus", "want pending or confirming, got %q", v)
	}
	for _, key := range sortedKeys(st.AgentConfig) {
		c := agent.DefaultConfig()
		if err := applyAgentConfig(&c, map[string]json.RawMessage{key: st.AgentConfig[key]}); err != nil {
			bad(0, "", "settings.agentConfig."+key, "%v", err)
		}
	}
	paid := map[string]bool{} // serviceIds of earlier pay steps
	anyPay := false
	payIDs := map[string]bool{} // serviceIds of every pay step, for faults aimed at a payment
	for _, s := range sc.Steps {
		if s.POS == "pay" && s.ServiceID != "" {
			payIDs[s.ServiceID] = true
		}
	}
	for i := range sc.Steps {
		s := &sc.Steps[i]
		n := i + 1
		kind := s.kind()
		var actions []string
		if s.POS != "" {
			actions = append(actions, "pos")
		}
		if s.Via != "" && (s.Via != "cloud" || s.POS == "") { // issue 16
			bad(n, kind, "via", `want "cloud" on a pos step, got %q`, s.Via)
		} else if s.Via == "cloud" && !st.Cloud {
			bad(n, kind, "via", "needs settings.cloud")
		}
		if s.Await != "" {
			actions = append(actions, "await")
		}
		if s.Consumer != "" {
			actions = append(actions, "consumer")
		}
		if s.Scan != "" && s.POS == "" {
			actions = append(actions, "scan")
		}
		if s.Fault != nil {
			actions = append(actions, "fault")
		}
		if s.ExpectCharges != nil {
			actions = append(actions, "expectCharges")
		}
		if s.ExpectNetCharges != nil {
			actions = append(actions, "expectNetCharges")
		}
		if s.ExpectPPaaS != nil {
			actions = append(actions, "expectPPaaS")
		}
		if s.Wait != 0 {
			actions = append(actions, "wait")
		}
		if s.ExpectPOSEvent != nil {
			actions = append(actions, "expectPOSEvent")
		}
		if s.Expect != nil && s.POS == "" {
			actions = append(actions, "expect")
		}
		switch len(actions) {
		case 0:
			bad(n, "", "", "no action: want one of pos, await, consumer, scan, fault, expect, expectCharges, expectNetCharges, expectPPaaS, expectPOSEvent, wait")
			continue
		case 1:
		default:
			bad(n, kind, actions[1], "a step does one thing, but this one has %s", strings.Join(actions, " and "))
			continue
		}
		if s.Timeout < 0 {
			bad(n, kind, "timeout", "must not be negative")
		}
		if s.RetryFor < 0 {
			bad(n, kind, "retryFor", "must not be negative")
		}
		if s.RetryFor > 0 && (s.POS == "" || s.POS == "pay" || s.Expect == nil) {
			bad(n, kind, "retryFor", "repeats a POS request other than pay until its expect holds")
		}
		if s.ServiceID != "" && len(s.ServiceID) > 10 {
			bad(n, kind, "serviceId", "Nexo ServiceIDs are 1 to 10 characters, got %d", len(s.ServiceID))
		}
		payOnly := func() {
			for field, v := range map[string]string{"amount": s.Amount, "currency": s.Currency, "brand": s.Brand} {
				if v != "" && s.POS != "pay" && !(field == "amount" && refundsAmount(s)) { // scenario_refund.go
					bad(n, kind, field, "only a pos pay step takes it")
				}
			}
		}
		if s.Args != nil && s.Consumer == "" {
			bad(n, kind, "args", "only a consumer step takes it")
		}
		if s.Scan != "" && s.POS != "" && s.POS != "pay" {
			bad(n, kind, "scan", "only a pos pay step (the POS's scanner) or a step alone (the terminal's) takes it")
		}
		if s.ScanError != "" && (s.Scan == "" || s.POS != "") {
			bad(n, kind, "scanError", "only a terminal scan step takes it")
		}
		switch actions[0] {
		case "pos":
			payOnly()
			if !oneOf(s.POS, posActions) {
				bad(n, kind, "pos", "want one of %s, got %q", strings.Join(posActions, ", "), s.POS)
				continue
			}
			if s.POS == "pay" {
				if s.Currency == "" {
					bad(n, kind, "currency", "is required")
				} else if _, err := parseMajor(s.Amount, s.Currency); err != nil {
					bad(n, kind, "amount", "%v", err)
				}
				if s.Brand == "" {
					bad(n, kind, "brand", "is required (KB, PENNYMATIC, PLEDG, KTWIDGET, PTI)")
				}
				anyPay = true
				if s.ServiceID != "" {
					paid[s.ServiceID] = true
				}
				break
			}
			if (s.POS == "reverse" || s.POS == "abort" || s.POS == "refund") && !anyPay {
				bad(n, kind, "pos", "needs an earlier pay step")
			}
			if msg := refundStepProblem(s, paid); msg != "" { // scenario_refund.go
				bad(n, kind, "original", "%s", msg)
			}
			if s.ServiceID != "" && (s.POS == "reverse" && s.Original == "" || s.POS == "abort") && !paid[s.ServiceID] {
				bad(n, kind, "serviceId", "%q is not the serviceId of an earlier pay step", s.ServiceID)
			}
			if s.ServiceID != "" && !oneOf(s.POS, []string{"reverse", "abort", "status", "receipt", "refund"}) {
				bad(n, kind, "serviceId", "pos %s does not take a serviceId", s.POS)
			}
		case "await":
			payOnly()
			for _, st := range strings.Split(s.Await, "|") {
				if !oneOf(st, screenStates) {
					bad(n, kind, "await", "want a screen state (%s) or several joined by |, got %q", strings.Join(screenStates, ", "), st)
				}
			}
			if s.ServiceID != "" {
				bad(n, kind, "serviceId", "await watches the terminal's screen, not a payment")
			}
		case "scan":
			payOnly()
			if !anyPay {
				bad(n, kind, "scan", "needs an earlier pay step (the terminal scans for the payment waiting for a code)")
			}
		case "consumer":
			payOnly()
			if strings.ContainsAny(s.Consumer, "/?# ") {
				bad(n, kind, "consumer", "an action name, got %q", s.Consumer)
			}
			if !anyPay {
				bad(n, kind, "consumer", "needs an earlier pay step (it acts on the transaction the terminal shows)")
			}
		case "fault":
			payOnly()
			validateFault(s.Fault, payIDs, func(field, format string, args ...any) {
				bad(n, kind, strings.TrimSuffix("fault."+field, "."), format, args...)
			})
		case "expect":
			payOnly()
			if !anyPay {
				bad(n, kind, "expect", "needs an earlier pay step (alone, it waits for a payment's response)")
			}
			if s.ServiceID != "" && !paid[s.ServiceID] {
				bad(n, kind, "serviceId", "%q is not the serviceId of an earlier pay step", s.ServiceID)
			}
		case "expectCharges":
			payOnly()
			if *s.ExpectCharges < 0 {
				bad(n, kind, "expectCharges", "must not be negative")
			}
		case "expectNetCharges":
			payOnly()
			if *s.ExpectNetCharges < 0 {
				bad(n, kind, "expectNetCharges", "must not be negative")
			}
		case "expectPPaaS":
			payOnly()
			if !anyPay {
				bad(n, kind, "expectPPaaS", "needs an earlier pay step (it checks a payment's record at PPaaS)")
			}
			if s.ServiceID != "" && !paid[s.ServiceID] {
				bad(n, kind, "serviceId", "%q is not the serviceId of an earlier pay step", s.ServiceID)
			}
			validateExpectPPaaS(s.ExpectPPaaS, func(field, format string, args ...any) {
				bad(n, kind, strings.TrimSuffix("expectPPaaS."+field, "."), format, args...)
			})
		case "expectPOSEvent":
			payOnly()
			validateExpectPOSEvent(s.ExpectPOSEvent, func(field, format string, args ...any) {
				bad(n, kind, "expectPOSEvent."+field, format, args...)
			})
		case "wait":
			payOnly()
			if s.Wait < 0 {
				bad(n, kind, "wait", "must not be negative")
			}
			if s.Timeout > 0 && s.Timeout < s.Wait {
				bad(n, kind, "timeout", "is shorter than the wait")
			}
		}
		if s.ServiceID != "" && !oneOf(actions[0], []string{"pos", "expect", "expectPPaaS", "await", "expectPOSEvent"}) {
			bad(n, kind, "serviceId", "a %s step does not take a serviceId", actions[0])
		}
		if s.Expect != nil {
			validateExpect(s.Expect, func(field, format string, args ...any) { bad(n, kind, "expect."+field, format, args...) })
		}
	}
	return errors.Join(errs...)
}

func validateFault(f *StepFault, payIDs map[string]bool, bad func(field, format string, args ...any)) {
	httpSet := f.Method != "" || f.Status != 0 || f.Reset || f.Latency != 0 || f.Count != 0
	target := f.Path != "" || f.Suffix != "" || f.Payment != ""
	if !target && httpSet {
		bad("path", "an HTTP fault (method, status, reset, latency, count) needs what it applies to: path, suffix or payment")
	}
	if f.Path != "" && !strings.HasPrefix(f.Path, "/") {
		bad("path", "must start with /, got %q", f.Path)
	}
	if f.Suffix != "" && !strings.HasPrefix(f.Suffix, "/") {
		bad("suffix", "must start with /, got %q", f.Suffix)
	}
	if f.Payment != "" && !payIDs[f.Payment] {
		bad("payment", "%q is not the serviceId of a pay step", f.Payment)
	}
	if target && f.Status == 0 && !f.Reset && f.Latency == 0 {
		field := "path"
		if f.Path == "" {
			field = map[bool]string{true: "suffix", false: "payment"}[f.Suffix != ""]
		}
		bad(field, "an HTTP fault needs a status, reset or latency")
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		bad("status", "want an HTTP status code, got %d", f.Status)
	}
	if f.Latency < 0 || f.EventDelay < 0 {
		bad("latency", "durations must not be negative")
	}
	for field, v := range map[string]int{"count": f.Count, "createErrors": f.CreateErrors, "dropEvents": f.DropEvents,
		"duplicateEvents": f.DuplicateEvents, "reorderEvents": f.ReorderEvents, "delayEvents": f.DelayEvents} {
		if v < 0 {
			bad(field, "must not be negative")
		}
	}
	if f.EventDelay != 0 && f.DelayEvents == 0 {
		bad("eventDelay", "applies to delayEvents, which is not set")
	}
	if f.RevokeDevice && f.RestoreDevice {
		bad("restoreDevice", "revokeDevice and restoreDevice together cancel out")
	}
	if f.Broker != "" && !oneOf(f.Broker, brokerActions) {
		bad("broker", "want stop, start or kick, got %q", f.Broker)
	}
	if f.ProviderMode != "" && !oneOf(string(f.ProviderMode), []string{"manual", "approve", "decline"}) {
		bad("providerMode", "want manual, approve or decline, got %q", f.ProviderMode)
	}
	for _, from := range sortedKeys(f.StatusSpellings) {
		to := f.StatusSpellings[from]
		if !oneOf(from, ppaasStates) {
			bad("statusSpellings", "%q is not a PPaaS status (%s)", from, strings.Join(ppaasStates, ", "))
		}
		if strings.TrimSpace(to) == "" || len(to) > 64 {
			bad("statusSpellings."+from, "want a spelling of 1 to 64 characters, got %q", to)
		}
	}
	if f.Refunds != "" && f.Refunds != "sync" && f.Refunds != "async" {
		bad("refunds", "want sync or async, got %q", f.Refunds)
	}
	if f.RefundDelay < 0 {
		bad("refundDelay", "must not be negative")
	}
	if f.RefundDelay != 0 && f.Refunds != "async" {
		bad("refundDelay", "applies to refunds \"async\", set in the same step")
	}
	if !httpSet && !target && !f.paymentSet() && f.ClockSkew == nil && !f.ExpireTokens && !f.RevokeDevice && !f.RestoreDevice &&
		f.Broker == "" && f.ProviderMode == "" && !f.ClearHTTP && !f.ClearPayments &&
		f.StatusSpellings == nil && f.Refunds == "" && !f.CompleteRefunds && f.AgentClock == nil && f.Retail == nil {
		bad("", "no fault: set path, suffix or payment (HTTP), createErrors, dropEvents, duplicateEvents, reorderEvents, delayEvents, clockSkew, expireTokens, revokeDevice, restoreDevice, broker, providerMode, clearHttp, clearPayments, statusSpellings, refunds, completeRefunds, agentClock or retail")
	}
}

func validateExpectPPaaS(e *ExpectPPaaS, bad func(field, format string, args ...any)) {
	if e.Status == "" && e.Charged == "" && e.Refunded == "" && e.RefundPending == "" && e.Charges == nil {
		bad("", "nothing to check: set status, charged, refunded, refundPending or charges")
	}
	if e.Status != "" && !oneOf(e.Status, ppaasStates) {
		bad("status", "want a PPaaS status (%s), got %q", strings.Join(ppaasStates, ", "), e.Status)
	}
	for field, v := range map[string]string{"charged": e.Charged, "refunded": e.Refunded, "refundPending": e.RefundPending} {
		if v == "" {
			continue
		}
		if r, ok := new(big.Rat).SetString(v); !ok || r.Sign() < 0 || strings.ContainsAny(v, "/eE") {
			bad(field, "want a decimal amount such as 12.50 (or 0), got %q", v)
		}
	}
	if e.Charges != nil && *e.Charges < 0 {
		bad("charges", "must not be negative")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// applyAgentConfig overrides agent configuration keys by their JSON names,
// through the configuration's own JSON form: an unknown key or a value of the
// wrong type is an error naming the key.
func applyAgentConfig(c *agent.Config, keys map[string]json.RawMessage) error {
	if len(keys) == 0 {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("agent configuration: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("agent configuration: %w", err)
	}
	for k, v := range keys {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("%q is not an agent configuration key", k)
		}
		m[k] = v
	}
	b, err = json.Marshal(m)
	if err != nil {
		return fmt.Errorf("agent configuration: %w", err)
	}
	var out agent.Config
	if err := strictDecode(b, &out); err != nil {
		return fmt.Errorf("agent configuration: %w", err)
	}
	*c = out
	return nil
}

func (f *StepFault) paymentSet() bool {
	return f.CreateErrors != 0 || f.DropEvents != 0 || f.DuplicateEvents != 0 || f.ReorderEvents != 0 || f.DelayEvents != 0
}

func validateExpect(e *Expect, bad func(field, format string, args ...any)) {
	if e.Repeated != nil {
		if e.Repeated.Repeated != nil || e.Repeated.RepeatedResult != "" {
			bad("repeated", "the original response has no original response of its own")
		}
		if len(e.Repeated.Hosts) > 0 {
			bad("repeated.hosts", "the original response of a payment has no diagnosis")
		}
		validateExpect(e.Repeated, func(field, format string, args ...any) { bad("repeated."+field, format, args...) })
	}
	if e.Message != "" && e.Message == e.NotMessage {
		bad("notMessage", "the same text as message")
	}
	if e.Result != "" && !oneOf(e.Result, nexoResults) {
		bad("result", "want Success, Failure or Partial, got %q", e.Result)
	}
	if e.RepeatedResult != "" && !oneOf(e.RepeatedResult, nexoResults) {
		bad("repeatedResult", "want Success, Failure or Partial, got %q", e.RepeatedResult)
	}
	if e.Amount != "" {
		r, ok := new(big.Rat).SetString(e.Amount)
		if !ok || r.Sign() <= 0 {
			bad("amount", "want a positive decimal number such as 12.50, got %q", e.Amount)
		}
	}
	for h := range e.Hosts {
		if !oneOf(h, []string{"PPaaS-auth", "PPaaS-API", "PPaaS-MQTT", "PPaaS-cloud"}) {
			bad("hosts", "want PPaaS-auth, PPaaS-API, PPaaS-MQTT or PPaaS-cloud, got %q", h)
		}
	}
	if e.ErrorCondition != "" && e.Result == string(nexo.Success) {
		bad("errorCondition", "a Success has no error condition")
	}
}

// kind names a step for messages: "pos pay", "await", "consumer decline", …
func (s *Step) kind() string {
	switch {
	case s.POS != "":
		return "pos " + s.POS
	case s.Await != "":
		return "await " + s.Await
	case s.Consumer != "":
		return "consumer " + s.Consumer
	case s.Scan != "":
		return "scan"
	case s.Fault != nil:
		return "fault"
	case s.ExpectCharges != nil:
		return "expectCharges"
	case s.ExpectNetCharges != nil:
		return "expectNetCharges"
	case s.ExpectPPaaS != nil:
		return "expectPPaaS"
	case s.Wait != 0:
		return "wait " + s.Wait.D().String()
	case s.ExpectPOSEvent != nil:
		return "expectPOSEvent"
	case s.Expect != nil:
		return "expect"
	}
	return ""
}

// parseMajor converts an amount in major units to minor units of currency.
func parseMajor(s, currency string) (int64, error) {
	exp, ok := nexo.CurrencyExponent(strings.ToUpper(currency))
	if !ok {
		return 0, fmt.Errorf("currency %q is not an ISO 4217 code the agent knows", currency)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() <= 0 || strings.ContainsAny(s, "/eE") {
		return 0, fmt.Errorf("want a positive decimal number such as 12.50, got %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, fmt.Errorf("%s has %d decimals, got %q", strings.ToUpper(currency), exp, s)
	}
	return r.Num().Int64(), nil
}
