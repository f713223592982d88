// Package qr runs alternative-payment-method (APM) transactions through PPaaS's
// qrcode-payment API: the HTTP client, the transaction state machine, the Engine
// that turns a payment request into an outcome, the MQTT subscriber that feeds
// provider events into it, and QR rendering for the terminal display.
//
// # Scenarios
//
// consumerscan (merchant-presented): PPaaS returns a QR payload (and optionally a
// PNG image) that the terminal shows; the consumer scans it with a wallet app.
// merchantscan (consumer-presented): the terminal scans the consumer's wallet QR
// and sends it as scannedPaymentId. scannedPaymentId is optional with consumerscan
// (the seed's example sends it) and required with merchantscan.
//
// The wire (request and response bodies, statuses, events, the topic) is
// package ppaas, shared with the simulated platform; this package is the
// device's client of it.
//
// Errors are JSON {"error":"code","message":"text"} with a 4xx/5xx status. 5xx,
// 429 and transport errors are retried with capped exponential backoff and jitter;
// the same clientTransactionId (and clientRefundId) is sent on every attempt so a
// retried create never charges twice.
//
// # Events
//
// The seed's flow has PPaaS acknowledge provider events and forward them to the
// terminal; the terminal acknowledges in turn with the MQTT PUBACK, sent only
// after the event was de-duplicated (by eventId, in the consumer's EventLog, or by
// the Engine itself for a payment in flight: DeduplicatesEvent) and its
// transition handed to the Recorder. How durable that is, is the consumer's
// choice: the agent defers intermediate records to the payment's final, durable
// journal write, and settles a payment whose records a crash lost from PPaaS's own
// state at restart. An event that is not acked is redelivered by the broker on
// the next connection of the persistent session.
// Events are applied in sequence order per transaction: one older than the last
// applied is dropped, gaps are allowed (intermediate states may be skipped), and
// events for a transaction already in a final state are ignored and logged.
// Polling is a first-class event source (the PPaaS document does not say how
// provider events reach a terminal): while Config.PushEvents reports no broker
// pushing events, the Engine polls the status endpoint after Config.PollFirst
// (1 s), then with a jittered backoff capped at Config.PollCap, never sooner
// than a Retry-After asks. With events pushed it polls only when none arrived for
// Config.PollAfter, and a broker that goes down mid-payment switches it to
// polling within about PollFirst, so an outage neither loses nor long delays an
// outcome.
package qr
