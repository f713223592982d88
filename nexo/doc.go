// Package nexo implements the Sale-to-POI side of the Nexo Retailer protocol
// that a POS uses to drive the terminal: the message model, its Nexo 3.x JSON
// and XML encodings (as spoken by existing Nexo JSON terminal APIs, including
// their optional SecurityTrailer/NexoBlob message protection), the POI server
// that applies the session rules (POIID, Login, one payment at a time,
// ServiceID uniqueness, Abort, TransactionStatus from a persistent journal),
// and a small POS-side client.
//
// The model types (Request, Response and their bodies) do not depend on the
// envelope: the 3.x codecs (wire3.go, map3.go) and the Nexo v5 (ISO 20022
// casp) JSON codec (wire5.go, map5.go) map them to and from the wire, and the
// server picks the codec per message from its envelope. A v5 message refused
// as a whole is answered with a casp.013 rejection rather than a Reject.
//
// Each MessageCategory is one entry of the table in category.go, defined in
// its own category_*.go file: how its bodies map to and from both envelopes,
// how the server serves it, and what its failure response carries. The
// codecs and the server go through the table rather than switching on the
// category themselves.
//
// Failures are Nexo responses with Result Failure, an ErrorCondition and an
// AdditionalResponse text, always with HTTP 200, except: a message refused by
// message security gets HTTP 401 (as the real API answers "crypto error") with
// an unprotected Failure/NotAllowed response; a body over the size limit gets
// HTTP 413; and a message without a usable MessageCategory is answered, as
// existing Nexo JSON terminal APIs do, with an EventNotification whose
// EventToNotify is Reject. Abort and EventNotification get HTTP 200 and an
// empty body.
//
// Everything the server needs from the rest of the agent (payment engines,
// journal, display, diagnostics, outbox) is a small interface declared here
// and passed in Deps.
package nexo
