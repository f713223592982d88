// Package nexo implements the Sale-to-POI side of the Nexo Retailer protocol
// that a POS uses to drive the terminal: the message model, its Nexo 3.x JSON
// and XML encodings (as spoken by existing Nexo JSON terminal APIs, including
// their optional SecurityTrailer/NexoBlob message protection), the POI server
// that applies the session rules (POIID, Login, one payment at a time,
// ServiceID uniqueness, Abort, TransactionStatus from a persistent journal),
// and a small POS-side client.
//
// The model types (Request, Response and their bodies) do not depend on the
// envelope: the 3.x codecs map them to and from the wire, so that a Nexo v5
// (ISO 20022 casp) codec can be added beside them later.
//
// Everything the server needs from the rest of the agent (payment engines,
// journal, display, diagnostics, outbox) is a small interface declared here
// and passed in Deps.
package nexo
