package world

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
)

// ScenarioOptions tune a scenario run.
type ScenarioOptions struct {
	// Dir is a scratch directory for the world (certificates, the agent's data).
	Dir string
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Logger is the world's log (default: discarded).
	Logger *slog.Logger
}

// RunScenario starts a fresh world, runs the scenario's steps in order and
// stops the world. The error, if any, is a *ScenarioError naming the step that
// failed.
func RunScenario(ctx context.Context, sc *Scenario, opts ScenarioOptions) (err error) {
	if err := sc.Validate(); err != nil {
		return err
	}
	timeout := sc.Timeout.D()
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	r := &scenarioRun{sc: sc, progress: opts.Progress, pending: map[string]*pendingPay{}, requests: map[string]*nexo.Request{}}
	r.screens = newScreenLog()
	wcfg := r.worldConfig(opts)
	w, err := StartWorld(ctx, wcfg)
	if err != nil {
		return &ScenarioError{Scenario: sc.Name, Msg: fmt.Sprintf("start the world: %v", err)}
	}
	r.w = w
	r.screens.forward(w.PPaaS.Terminals(), w.Agent.Serial())
	defer func() {
		cancel() // payments still running end now
		r.wg.Wait()
		cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer ccancel()
		if cerr := w.Close(cctx); cerr != nil && err == nil {
			err = &ScenarioError{Scenario: sc.Name, Msg: fmt.Sprintf("stop the world: %v", cerr)}
		}
	}()
	client, err := w.POS()
	if err != nil {
		return &ScenarioError{Scenario: sc.Name, Msg: fmt.Sprintf("POS client: %v", err)}
	}
	r.pos = &POS{Client: client, POIID: w.Agent.POIID(), SaleID: "SCENARIO"}
	if sc.Settings.Cloud { // issue 16
		if r.cloud, err = openCloudPOS(ctx, w, client.HTTP); err != nil {
			return &ScenarioError{Scenario: sc.Name, Msg: fmt.Sprintf("cloud POS: %v", err)}
		}
	}

	for i := range sc.Steps {
		s := &sc.Steps[i]
		start := time.Now()
		err := r.step(ctx, s)
		mark, took := "✓", time.Since(start).Round(time.Millisecond)
		if err != nil {
			mark = "✗"
		}
		r.logf("  %s step %d %s (%s)\n", mark, i+1, s.kind(), took)
		for _, d := range r.details {
			r.logf("      %s\n", strings.ReplaceAll(d, "\n", "\n      "))
		}
		r.details = r.details[:0]
		if err != nil {
			r.logf("      %v\n", err)
			return &ScenarioError{Scenario: sc.Name, Step: i + 1, Kind: s.kind(), Msg: err.Error()}
		}
	}
	return nil
}

type pendingPay struct {
	done chan struct{}
	resp *nexo.Response
	err  error
}

type scenarioRun struct {
	sc       *Scenario
	w        *World
	pos      *POS
	screens  *screenLog
	progress io.Writer
	details  []string // what the current step saw, printed after its verdict

	wg       sync.WaitGroup // background payments
	pending  map[string]*pendingPay
	requests map[string]*nexo.Request // pay requests by serviceId, resent as is by a replay
	last     string                   // serviceId of the last pay
	paid     map[string]string        // serviceId → POI transaction id, once answered with Success
	cloud    *POS                     // issue 16: the cloud POS (settings.cloud)
}

func (r *scenarioRun) logf(format string, args ...any) {
	if r.progress != nil {
		fmt.Fprintf(r.progress, format, args...)
	}
}

func (r *scenarioRun) detail(format string, args ...any) {
	r.details = append(r.details, fmt.Sprintf(format, args...))
}

func (r *scenarioRun) worldConfig(opts ScenarioOptions) WorldConfig {
	st := r.sc.Settings
	orD := func(d sim.Duration, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d.D()
	}
	lost := st.KTWidgetLostAcks
	retry := st.KTWidgetRetryScale
	if retry == 0 {
		retry = 0.001
	}
	return WorldConfig{
		Cloud: st.Cloud, // issue 16
		Dir:   opts.Dir,
		PPaaS: sim.Config{
			Addr:     "127.0.0.1:0",
			TokenTTL: st.TokenTTL.D(),
			Payments: sim.PaymentsConfig{
				Provider: st.ProviderMode,
				Providers: sim.ProvidersConfig{
					Pennymatic: sim.PennymaticConfig{ConfirmDelay: orD(st.PennymaticConfirmDelay, 200*time.Millisecond), PaidStatus: ppaas.State(st.PennymaticPaidStatus)},
					Pledg:      sim.PledgConfig{Shares: st.PledgShares, Deadline: st.PledgDeadline.D(), Signing: st.PledgSigning},
					KTWidget:   sim.KTWidgetConfig{RetryScale: retry, LostAcks: lost, ClearingDelay: orD(st.KTWidgetClearingDelay, 50*time.Millisecond)},
				},
			},
		},
		AgentConfig: func(c *agent.Config) {
			c.PaymentTimeout = orD(st.PaymentTimeout, 20*time.Second)
			c.EventWait = orD(st.EventWait, time.Second)
			_ = applyAgentConfig(c, st.AgentConfig) // validated with the scenario
		},
		AgentOptions: agent.Options{
			Display:   r.screens,
			Forwarder: agent.ForwarderConfig{BaseDelay: 20 * time.Millisecond, MaxDelay: 500 * time.Millisecond},
		},
		Logger: opts.Logger,
	}
}

// stepContext bounds one step by its own timeout.
func stepContext(ctx context.Context, s *Step) (context.Context, context.CancelFunc) {
	if s.Timeout > 0 {
		return context.WithTimeout(ctx, s.Timeout.D())
	}
	return context.WithCancel(ctx)
}

// step runs one step; ctx is the scenario's (background payments outlive the step).
func (r *scenarioRun) step(scenario context.Context, s *Step) error {
	ctx, cancel := stepContext(scenario, s)
	defer cancel()
	switch {
	case s.POS != "":
		return r.posStep(scenario, ctx, s)
	case s.Await != "":
		sc, err := r.screens.await(ctx, s.Await)
		if err != nil {
			return fmt.Errorf("the terminal did not show %q (last screens: %s): %w", s.Await, r.screens.recent(), err)
		}
		r.detail("terminal: %s %s", sc.State, sc.Message)
		return nil
	case s.Consumer != "":
		id := r.screens.transaction()
		if id == "" {
			return errors.New("the terminal shows no transaction to act on (await awaiting_consumer first)")
		}
		args := url.Values{}
		for k, v := range s.Args {
			args.Set(k, v)
		}
		tx, err := r.w.PPaaS.ActArgs(id, s.Consumer, args)
		if err != nil {
			return err
		}
		r.detail("transaction %s is %s", tx.TransactionID, tx.Status)
		return nil
	case s.Scan != "": // the terminal's scanner (scan.go)
		ctid, err := r.w.PPaaS.Terminals().Scan(ctx, r.w.Agent.Serial(), s.Scan)
		switch {
		case s.ScanError != "" && err == nil:
			return fmt.Errorf("the scan was taken by %s, want it refused with %q", ctid, s.ScanError)
		case s.ScanError != "" && !strings.Contains(err.Error(), s.ScanError):
			return fmt.Errorf("the scan was refused with %q, want %q", err, s.ScanError)
		case s.ScanError != "":
			r.detail("scan refused as expected: %v", err)
			return nil
		case err != nil:
			return fmt.Errorf("the terminal's scan: %w", err)
		}
		r.detail("scanned code taken by POI transaction %s", ctid)
		return nil
	case s.Fault != nil:
		return r.fault(s.Fault)
	case s.ExpectCharges != nil:
		return r.expectCharges(ctx, *s.ExpectCharges)
	case s.ExpectNetCharges != nil:
		return r.expectNetCharges(ctx, *s.ExpectNetCharges)
	case s.ExpectPPaaS != nil:
		sid := s.ServiceID
		if sid == "" {
			sid = r.last
		}
		if s.Timeout == 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
		}
		return r.expectPPaaS(ctx, sid, s.ExpectPPaaS)
	case s.ExpectPOSEvent != nil: // scenario_aftersale.go
		return r.expectPOSEvent(ctx, s)
	case s.Wait != 0:
		t := time.NewTimer(s.Wait.D())
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting %s: %w", s.Wait.D(), ctx.Err())
		}
	case s.Expect != nil:
		sid := s.ServiceID
		if sid == "" {
			sid = r.last
		}
		p := r.pending[sid]
		if p == nil {
			return fmt.Errorf("no payment %q was started", sid)
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			return fmt.Errorf("no response to payment %q: %w", sid, ctx.Err())
		}
		if p.err != nil && s.Expect.Failed != "" && strings.Contains(p.err.Error(), s.Expect.Failed) { // issue 16
			r.detail("the POS's call failed as expected: %v", p.err)
			return nil
		}
		if p.err != nil {
			return fmt.Errorf("payment %q: %w", sid, p.err)
		}
		if s.Expect.Failed != "" {
			return fmt.Errorf("payment %q: answered, want the call failed with %q", sid, s.Expect.Failed)
		}
		return r.check(s.Expect, p.resp)
	}
	return errors.New("nothing to do")
}

func (r *scenarioRun) posStep(scenario, ctx context.Context, s *Step) error {
	var (
		resp *nexo.Response
		err  error
	)
	if s.Via == "cloud" { // issue 16: this step through the Retail API
		local := r.pos
		r.pos = r.cloud
		defer func() { r.pos = local }()
	}
	sid := s.ServiceID
	if sid == "" && s.POS != "pay" && s.POS != "status" {
		sid = r.last
	}
	switch s.POS {
	case "pay":
		minor, _ := parseMajor(s.Amount, s.Currency) // validated
		if sid == "" {
			sid = NewServiceID()
		}
		r.last = sid
		req := r.pos.ScannedPaymentRequest(sid, minor, strings.ToUpper(s.Currency), s.Brand, s.Scan) // scan.go
		if prev := r.requests[sid]; prev != nil && prev.Payment.Amount == req.Payment.Amount && prev.Payment.AllowedBrands[0] == s.Brand {
			req = prev // a POS retrying a payment sends the very same request
		}
		r.requests[sid] = req
		if s.Expect != nil {
			resp, err = r.pos.Client.Do(ctx, req)
			r.settled(sid, resp)
			break
		}
		p := &pendingPay{done: make(chan struct{})}
		r.pending[sid] = p
		r.wg.Add(1)
		client := r.pos.Client
		go func() { // owned by the run: RunScenario cancels and waits for it
			defer r.wg.Done()
			p.resp, p.err = client.Do(scenario, req)
			close(p.done)
		}()
		return nil
	case "refund":
		resp, err = r.refundStep(ctx, s) // scenario_refund.go
	case "reverse":
		if s.Original != "" || s.Amount != "" {
			resp, err = r.refundStep(ctx, s) // a partial reversal: scenario_refund.go
			break
		}
		poi := r.paidTxn(sid)
		if poi == "" {
			return fmt.Errorf("payment %q has no successful response to reverse", sid)
		}
		resp, err = r.pos.Reverse(ctx, poi, "MerchantCancel")
	case "abort":
		if err := r.pos.Abort(ctx, sid); err != nil {
			return err
		}
		return nil
	default:
		return r.query(ctx, s, sid)
	}
	if err != nil {
		return err
	}
	r.detail("%s", Describe(resp))
	if s.Expect != nil {
		return r.check(s.Expect, resp)
	}
	return nil
}

// query sends a status, diagnosis, login or logout, again every 100 ms for up
// to the step's RetryFor until its Expect holds.
func (r *scenarioRun) query(ctx context.Context, s *Step, sid string) error {
	var deadline time.Time
	if s.RetryFor > 0 {
		deadline = time.Now().Add(s.RetryFor.D())
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for attempt := 1; ; attempt++ {
		var (
			resp *nexo.Response
			err  error
		)
		switch s.POS {
		case "status":
			resp, err = r.pos.Status(ctx, sid)
		case "diagnosis":
			resp, err = r.pos.Diagnosis(ctx)
		case "login":
			resp, err = r.pos.Login(ctx)
		case "logout":
			resp, err = r.pos.Logout(ctx)
		case "totals":
			resp, err = r.pos.Totals(ctx, nil, nil)
		case "reconcile":
			resp, err = r.pos.Reconcile(ctx, nexo.ReconSale, "")
		case "sync":
			resp, err = r.pos.Reconcile(ctx, nexo.ReconAcquirerSynchronisation, "")
		case "receipt":
			resp, err = r.pos.Receipt(ctx, sid)
		}
		if err == nil && s.Expect != nil {
			err = r.check(s.Expect, resp)
		}
		if err == nil || deadline.IsZero() || time.Now().After(deadline) {
			if resp != nil {
				r.detail("%s", Describe(resp))
			}
			if err != nil && attempt > 1 {
				return fmt.Errorf("after %d attempts in %s: %w", attempt, s.RetryFor.D(), err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %d attempts: %w", attempt, ctx.Err())
		case <-tick.C:
		}
	}
}

// settled records a payment's POI transaction for a later reverse.
func (r *scenarioRun) settled(sid string, resp *nexo.Response) {
	if resp == nil || resp.Status.Result != nexo.Success || resp.Payment == nil {
		return
	}
	if r.paid == nil {
		r.paid = map[string]string{}
	}
	r.paid[sid] = resp.Payment.POITransactionID.ID
}

func (r *scenarioRun) paidTxn(sid string) string {
	if p := r.pending[sid]; p != nil {
		select {
		case <-p.done:
			r.settled(sid, p.resp)
		default:
		}
	}
	return r.paid[sid]
}

func (r *scenarioRun) fault(f *StepFault) error {
	if f.Retail != nil { // issue 16
		r.w.PPaaS.SetRetailFaults(*f.Retail)
	}
	p := r.w.PPaaS
	serial := r.w.Agent.Serial()
	if f.ClearHTTP {
		p.ClearFaults()
	}
	if f.ClearPayments {
		p.SetPaymentFaults(sim.PaymentFaults{})
	}
	if f.Path != "" || f.Suffix != "" || f.Payment != "" {
		rule := sim.Fault{Path: f.Path, Suffix: f.Suffix, Method: f.Method, Status: f.Status, Reset: f.Reset, Latency: f.Latency.D(), Count: f.Count}
		if f.Payment != "" {
			rule.OrderID = orderIDOf(f.Payment)
		}
		if err := rule.Validate(); err != nil {
			return err
		}
		p.AddFault(rule)
	}
	if f.StatusSpellings != nil {
		m := make(map[ppaas.State]string, len(f.StatusSpellings))
		for k, v := range f.StatusSpellings {
			m[ppaas.State(k)] = v
		}
		if err := p.SetStatusSpellings(m); err != nil {
			return err
		}
	}
	if f.Refunds != "" {
		if err := p.SetRefundMode(sim.RefundMode{Async: f.Refunds == "async", Delay: f.RefundDelay.D()}); err != nil {
			return err
		}
	}
	if f.CompleteRefunds {
		n, err := p.CompleteRefunds("")
		if err != nil {
			return err
		}
		r.detail("%d pending refunds completed", n)
	}
	if f.AgentClock != nil {
		if r.w.AgentClock == nil {
			return errors.New("the agent brought its own clock: agentClock cannot move it")
		}
		r.w.AgentClock.Set(f.AgentClock.D())
		r.detail("agent clock reads %s", r.w.AgentClock.Now().UTC().Format(time.RFC3339))
	}
	if f.paymentSet() {
		p.SetPaymentFaults(sim.PaymentFaults{CreateErrors: f.CreateErrors, DropEvents: f.DropEvents, DuplicateEvents: f.DuplicateEvents,
			ReorderEvents: f.ReorderEvents, DelayEvents: f.DelayEvents, EventDelayMS: int(f.EventDelay.D().Milliseconds())})
	}
	if f.ClockSkew != nil {
		p.SetClockSkew(f.ClockSkew.D())
	}
	if f.ExpireTokens {
		p.ExpireTokens()
	}
	if f.RevokeDevice || f.RestoreDevice {
		if err := p.RevokeCredentials(serial, f.RevokeDevice); err != nil {
			return err
		}
	}
	switch f.Broker {
	case "stop":
		if err := p.StopBroker(); err != nil {
			return fmt.Errorf("stop the broker: %w", err)
		}
	case "start":
		if err := p.StartBroker(); err != nil {
			return fmt.Errorf("start the broker: %w", err)
		}
	case "kick":
		if err := p.KickDevice(serial); err != nil {
			return fmt.Errorf("kick the terminal off the broker: %w", err)
		}
	}
	if f.ProviderMode != "" {
		if err := p.SetProviderMode(f.ProviderMode); err != nil {
			return err
		}
	}
	return nil
}

// expectCharges waits until the terminal's charges at the simulated PPaaS are n
// and stay n for a short settling time (a duplicate charge comes shortly after
// the first, if at all).
func (r *scenarioRun) expectCharges(ctx context.Context, n int) error {
	serial := r.w.Agent.Serial()
	return settle(ctx, func() (bool, error) {
		_, charges := r.w.PPaaS.Transactions()
		got := charges[serial]
		return got == n, fmt.Errorf("%d approved charges at the simulated PPaaS, want %d", got, n)
	})
}

// orderIDOf is the order id PPaaS records for the payment with this serviceId:
// the POS driver's SaleTransactionID, which the agent sends as orderId.
func orderIDOf(serviceID string) string { return "ORDER-" + serviceID }

// expectNetCharges waits until the charges that still stand (approved, not
// refunded in full) are n and stay n for a short settling time.
func (r *scenarioRun) expectNetCharges(ctx context.Context, n int) error {
	serial := r.w.Agent.Serial()
	return settle(ctx, func() (bool, error) {
		got := r.w.PPaaS.NetCharges(serial)
		return got == n, fmt.Errorf("%d charges stand at the simulated PPaaS (approved, not refunded in full), want %d", got, n)
	})
}

// expectPPaaS waits until PPaaS's record of payment sid shows what e says.
func (r *scenarioRun) expectPPaaS(ctx context.Context, sid string, e *ExpectPPaaS) error {
	serial := r.w.Agent.Serial()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		tx, ok := r.w.PPaaS.PaymentByOrder(serial, orderIDOf(sid))
		var err error
		if !ok {
			err = fmt.Errorf("PPaaS has no transaction for payment %q (order %s)", sid, orderIDOf(sid))
		} else if err = checkPPaaS(e, tx); err == nil {
			r.detail("PPaaS: %s", describeSimTx(tx))
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// checkPPaaS compares PPaaS's record of a payment with what a step expects.
func checkPPaaS(e *ExpectPPaaS, tx sim.SimTransaction) error {
	var problems []string
	if e.Status != "" && string(tx.Status) != e.Status {
		problems = append(problems, fmt.Sprintf("status is %q, want %q", tx.Status, e.Status))
	}
	cur := tx.PaymentAmount.Currency
	charged := int64(0)
	if tx.Charges > 0 {
		charged = tx.PaymentAmount.Amount
	}
	for _, c := range []struct {
		field, want string
		got         int64
	}{{"charged", e.Charged, charged}, {"refunded", e.Refunded, tx.RefundedAmount}, {"refundPending", e.RefundPending, tx.RefundPending}} {
		if c.want == "" {
			continue
		}
		want, _ := new(big.Rat).SetString(c.want)
		got := majorUnits(c.got, cur)
		if got.Cmp(want) != 0 {
			exp, _ := nexo.CurrencyExponent(cur)
			problems = append(problems, fmt.Sprintf("%s is %s %s, want %s", c.field, got.FloatString(exp), cur, c.want))
		}
	}
	if e.Charges != nil && tx.Charges != *e.Charges {
		problems = append(problems, fmt.Sprintf("charges is %d, want %d", tx.Charges, *e.Charges))
	}
	if len(problems) > 0 {
		return fmt.Errorf("PPaaS record %s: %s", describeSimTx(tx), strings.Join(problems, "; "))
	}
	return nil
}

func majorUnits(minor int64, currency string) *big.Rat {
	exp, _ := nexo.CurrencyExponent(currency)
	return new(big.Rat).SetFrac(big.NewInt(minor), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil))
}

// describeSimTx is one line about PPaaS's record of a transaction.
func describeSimTx(tx sim.SimTransaction) string {
	exp, _ := nexo.CurrencyExponent(tx.PaymentAmount.Currency)
	d := fmt.Sprintf("%s %s: %s, amount %s %s, charges %d, refunded %s", tx.PaymentType, tx.TransactionID, tx.Status,
		majorUnits(tx.PaymentAmount.Amount, tx.PaymentAmount.Currency).FloatString(exp), tx.PaymentAmount.Currency,
		tx.Charges, majorUnits(tx.RefundedAmount, tx.PaymentAmount.Currency).FloatString(exp))
	if tx.RefundPending > 0 {
		d += ", refund pending " + majorUnits(tx.RefundPending, tx.PaymentAmount.Currency).FloatString(exp)
	}
	return d
}

// settle polls ok until it holds for a short settling time (a duplicate
// charge comes shortly after the first, if at all), for up to 10 s; the error
// is the last one ok gave.
func settle(ctx context.Context, ok func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	const settling = 200 * time.Millisecond
	var since time.Time
	for {
		held, err := ok()
		switch {
		case !held:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= settling:
			return nil
		}
		select {
		case <-ctx.Done():
			if held {
				return nil
			}
			return err
		case <-tick.C:
		}
	}
}

// check compares a response with what the step expects.
func (r *scenarioRun) check(e *Expect, resp *nexo.Response) error {
	problems, err := checkResponse(e, resp)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("response %s: %s", strings.ReplaceAll(Describe(resp), "\n", ";"), strings.Join(problems, "; "))
	}
	return nil
}

// checkResponse lists how resp differs from e.
func checkResponse(e *Expect, resp *nexo.Response) ([]string, error) {
	if resp == nil {
		if e.Result == "" && e.ErrorCondition == "" && e.Message == "" && e.NotMessage == "" && e.Amount == "" && e.Brand == "" &&
			e.RepeatedResult == "" && e.Repeated == nil && len(e.Hosts) == 0 {
			return nil, nil
		}
		return nil, errors.New("no response body")
	}
	var problems []string
	mismatch := func(field, got, want string) {
		problems = append(problems, fmt.Sprintf("%s is %q, want %q", field, got, want))
	}
	if e.Result != "" && string(resp.Status.Result) != e.Result {
		mismatch("result", string(resp.Status.Result), e.Result)
	}
	problems = append(problems, checkDayEnd(e, resp)...)
	if e.ErrorCondition != "" && string(resp.Status.ErrorCondition) != e.ErrorCondition {
		mismatch("errorCondition", string(resp.Status.ErrorCondition), e.ErrorCondition)
	}
	if e.Message != "" && !strings.Contains(resp.Status.AdditionalResponse, e.Message) {
		mismatch("message", resp.Status.AdditionalResponse, "…"+e.Message+"…")
	}
	if e.NotMessage != "" && strings.Contains(resp.Status.AdditionalResponse, e.NotMessage) {
		problems = append(problems, fmt.Sprintf("message is %q, want no %q in it", resp.Status.AdditionalResponse, e.NotMessage))
	}
	if e.Repeated != nil {
		var rep *nexo.Response
		if ts := resp.TransactionStatus; ts != nil {
			rep = ts.Repeated
		}
		if rep == nil {
			problems = append(problems, "no original response (RepeatedMessageResponse) to check")
		} else {
			sub, err := checkResponse(e.Repeated, rep)
			if err != nil {
				return nil, err
			}
			for _, p := range sub {
				problems = append(problems, "original response "+p)
			}
		}
	}
	res := paymentResult(resp)
	if e.RepeatedResult != "" {
		got := ""
		if ts := resp.TransactionStatus; ts != nil && ts.Repeated != nil {
			got = string(ts.Repeated.Status.Result)
		}
		if got != e.RepeatedResult {
			mismatch("repeatedResult", got, e.RepeatedResult)
		}
	}
	if len(e.Hosts) > 0 {
		reachable := map[string]bool{}
		if d := resp.Diagnosis; d != nil {
			for _, h := range d.Hosts {
				reachable[h.AcquirerID] = h.Reachable
			}
		}
		for name, want := range e.Hosts {
			got, ok := reachable[name]
			switch {
			case !ok:
				problems = append(problems, "no diagnosis of host "+name)
			case got != want:
				mismatch("host "+name+" reachable", fmt.Sprint(got), fmt.Sprint(want))
			}
		}
	}
	if e.Amount != "" || e.Brand != "" {
		if res == nil {
			problems = append(problems, "no payment result (amount and brand cannot be checked)")
		} else {
			if e.Brand != "" && res.Brand != e.Brand {
				mismatch("brand", res.Brand, e.Brand)
			}
			if e.Amount != "" {
				want, _ := new(big.Rat).SetString(e.Amount)
				exp, _ := nexo.CurrencyExponent(res.AuthorizedAmount.Currency)
				got := new(big.Rat).SetFrac(big.NewInt(res.AuthorizedAmount.Minor), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil))
				if got.Cmp(want) != 0 {
					mismatch("amount", got.FloatString(exp), e.Amount)
				}
			}
		}
	}
	return problems, nil
}

// paymentResult is a response's payment result, or its repeated response's.
func paymentResult(resp *nexo.Response) *nexo.PaymentResult {
	if resp.Payment != nil && resp.Payment.Result != nil {
		return resp.Payment.Result
	}
	if ts := resp.TransactionStatus; ts != nil && ts.Repeated != nil && ts.Repeated.Payment != nil {
		return ts.Repeated.Payment.Result
	}
	return nil
}

// screenLog records every screen the agent shows (a watcher of the virtual
// terminal may miss quick intermediate ones) and forwards them to the virtual
// terminal.
type screenLog struct {
	mu      sync.Mutex
	hub     *sim.Terminals
	serial  string
	screens []display.Screen
	cursor  int           // screens before it were awaited already
	changed chan struct{} // closed and replaced at each screen
}

func newScreenLog() *screenLog { return &screenLog{changed: make(chan struct{})} }

func (l *screenLog) forward(hub *sim.Terminals, serial string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hub, l.serial = hub, serial
}

// ShowScreen implements agent.Screens.
func (l *screenLog) ShowScreen(_ context.Context, sc display.Screen) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc.Serial = l.serial
	l.screens = append(l.screens, sc)
	close(l.changed)
	l.changed = make(chan struct{})
	if l.hub != nil {
		l.hub.Show(sc)
	}
	return nil
}

// await returns the first screen after the cursor in one of the states
// (separated by |), waiting for it.
func (l *screenLog) await(ctx context.Context, states string) (display.Screen, error) {
	want := strings.Split(states, "|")
	for {
		l.mu.Lock()
		for i := l.cursor; i < len(l.screens); i++ {
			if oneOf(l.screens[i].State, want) {
				l.cursor = i + 1
				s := l.screens[i]
				l.mu.Unlock()
				return s, nil
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return display.Screen{}, ctx.Err()
		}
	}
}

// transaction is the PPaaS transaction of the latest screen that shows one.
func (l *screenLog) transaction() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.screens) - 1; i >= 0; i-- {
		if id := l.screens[i].TransactionID; id != "" {
			return id
		}
	}
	return ""
}

// recent lists the last few states, for failure messages.
func (l *screenLog) recent() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	from := max(0, len(l.screens)-6)
	var states []string
	for _, s := range l.screens[from:] {
		states = append(states, s.State)
	}
	if len(states) == 0 {
		return "none"
	}
	return strings.Join(states, " → ")
}
