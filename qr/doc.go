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
// # HTTP API (device side, mTLS + bearer token)
//
//	POST /qrcode-payment/v1/transactions
//	  {"paymentType":"KB","paymentScenario":"consumerscan",
//	   "scannedPaymentId":"281666027690188713769014",          (optional for consumerscan)
//	   "clientTransactionId":"9236613c-ef7e-4a98-bfb6-16048c0e4f9b",
//	   "paymentAmount":{"amount":2000,"currency":"EUR"},        (minor units)
//	   "order":{"orderId":"628ac1ce-…","orderDescription":"Venmo Test"}}
//	  → 201 Transaction (200 with the same Transaction when clientTransactionId
//	    was already used by this device: create is idempotent per device)
//	GET  /qrcode-payment/v1/transactions/{transactionId}            → 200 Transaction
//	POST /qrcode-payment/v1/transactions/{transactionId}/cancel     → 200 Transaction
//	  (idempotent; 409 with the Transaction when it is already approved/declined)
//	POST /qrcode-payment/v1/transactions/{transactionId}/refund
//	  {"clientRefundId":"uuid","amount":{"amount":2000,"currency":"EUR"}} → 200 Refund
//	  (idempotent by clientRefundId)
//
// Transaction (response body):
//
//	{"transactionId":"ppaas id","clientTransactionId":"uuid",
//	 "paymentType":"KB","paymentScenario":"consumerscan",
//	 "status":"awaiting_consumer",   created|awaiting_consumer|pending|approved|
//	                                 declined|cancelled|expired|refunded
//	 "statusReason":"free text",     optional
//	 "sequence":2,                   the sequence of the last event published for it
//	 "qrCode":{"payload":"text to encode","imagePng":"base64, optional"},
//	 "providerReference":"provider's id","paymentAmount":{…},"order":{…},
//	 "refundedAmount":0,"createdAt":"RFC 3339","updatedAt":"RFC 3339"}
//
// Errors are JSON {"error":"code","message":"text"} with a 4xx/5xx status. 5xx,
// 429 and transport errors are retried with capped exponential backoff and jitter;
// the same clientTransactionId (and clientRefundId) is sent on every attempt so a
// retried create never charges twice.
//
// # Events (MQTT)
//
// Topic ppaas/devices/{serial}/events, QoS 1, persistent session (CleanSession
// false, client id = serial, username = serial, password = the device JWT). One
// message per event:
//
//	{"eventId":"uuid","type":"transaction.status",
//	 "transactionId":"ppaas id","clientTransactionId":"uuid",
//	 "status":"approved","statusReason":"optional text",
//	 "sequence":3,                   per transaction, starts at 1, strictly increasing
//	 "time":"RFC 3339 with nanoseconds",
//	 "providerReference":"provider's id",
//	 "provider":{"paymentType":"KB", …provider specific strings…}}
//
// The seed's flow has PPaaS acknowledge provider events and forward them to the
// terminal; the terminal acknowledges in turn with the MQTT PUBACK, sent only
// after the event was de-duplicated (by eventId, in the consumer's EventLog) and
// its transition handed to the Recorder. How durable that is, is the consumer's
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
