// Package ppaas is the wire of the PPaaS platform as this project speaks it:
// the JSON bodies of the qrcode-payment API (transaction create and read,
// cancel, refund, the device's transaction listing), the transaction statuses,
// amounts in minor units, the provider events PPaaS forwards over MQTT and
// their topic, and the frames of the Retail API's websocket relay. Both sides
// import it: the device's client (package qr, and agent for the relay) and the
// simulated platform (package sim). It holds types, their validation and
// decoding, nothing that does I/O.
//
// # What is the platform's and what is assumed
//
// The PPaaS document ("Build your integration") shows one body: the create
// request (CreateRequest; testdata/create_request.json is its example, amounts
// in minor units). Everything else here is this project's assumption, written
// down so the client and the simulator agree on it and so it can be checked
// against the real platform in one place:
//
//   - the Transaction response body, its fields and status vocabulary (State);
//     Statuses maps a real platform's spellings onto it, and an unknown one
//     reads as pending (keep asking) rather than as a decided outcome;
//   - GET, cancel and refund of a transaction, and their idempotency
//     (create by clientTransactionId per device, refund by clientRefundId);
//   - the transaction listing (GET …/transactions?createdFrom=…&createdTo=…),
//     which reconciliation uses, and recovery to find a merchantscan payment
//     by its clientTransactionId without replaying its create (that would
//     charge the consumer's code); the document has none;
//   - the events: the document says PPaaS forwards provider events to the
//     terminal, not how; we assume MQTT on EventTopic with the Event body;
//   - the Retail API relay frames (CloudFrame); the platform's are not public.
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
// Errors are JSON {"error":"code","message":"text"} with a 4xx/5xx status.
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
package ppaas
