package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Kind says what an outbox record carries. It decides whether the record may
// be refused when the outbox is full (see Critical).
type Kind uint8

// Outbox record kinds. The numeric values are stored on disk: never renumber.
const (
	KindUnknown           Kind = 0
	KindTransactionResult Kind = 1 // final outcome of a payment/refund
	KindAdvice            Kind = 2 // reversal or cancel advice for an outcome left unknown
	KindReceipt           Kind = 3 // digital receipt
	KindDeviceStatus      Kind = 4 // periodic device status
	KindNexoEvent         Kind = 5 // Nexo event notification to forward

	kindMax = KindNexoEvent
)

// String returns the kind's stable name (used in metrics labels and the CLI).
func (k Kind) String() string {
	switch k {
	case KindTransactionResult:
		return "transaction-result"
	case KindAdvice:
		return "advice"
	case KindReceipt:
		return "receipt"
	case KindDeviceStatus:
		return "device-status"
	case KindNexoEvent:
		return "nexo-event"
	case KindUnknown:
		return "unknown"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k := KindTransactionResult; k <= kindMax; k++ {
		if k.String() == s {
			return k, nil
		}
	}
	return KindUnknown, fmt.Errorf("unknown outbox kind %q", s)
}

// Critical reports whether records of this kind must never be refused or
// dropped: money moved (or may have moved) and PPaaS has to learn about it.
func (k Kind) Critical() bool {
	return k == KindTransactionResult || k == KindAdvice
}

func (k Kind) valid() bool { return k > KindUnknown && k <= kindMax }

// Event is what a producer hands to Append.
type Event struct {
	Kind    Kind
	Payload []byte
	// Key is the idempotency key the receiver de-duplicates on. Zero means
	// "generate one"; producers that may append the same logical event twice
	// (e.g. after a restart) should pass a stable key.
	Key uuid.UUID
	// TTL bounds how long the record may wait for delivery before it is moved
	// to the dead-letter bucket. Zero means Options.DefaultTTL.
	TTL time.Duration
}

// Record is one outbox (or dead-letter) entry.
type Record struct {
	Seq         uint64 // position in the FIFO; assigned by Append
	Kind        Kind
	Key         uuid.UUID
	Payload     []byte
	Created     time.Time
	Attempts    uint32    // failed delivery attempts so far
	NextAttempt time.Time // zero: deliver now
	Expires     time.Time // zero: never
	LastError   string    // last delivery error (or dead-letter reason)
	DeadAt      time.Time // set when moved to the dead-letter bucket
}

// encodedSize is the number of bytes the record occupies on disk (key +
// value); it is what the outbox byte bound counts.
func (r *Record) encodedSize() int { return 8 + len(encodeRecord(r)) }

// Record value layout (version 1), all integers varint-encoded:
//
//	version(1) kind(1) key(16) created attempts nextAttempt expires deadAt
//	len(lastError) lastError len(payload) payload
//
// Times are Unix nanoseconds, 0 meaning the zero time. The sequence number is
// the bbolt key and is not repeated in the value.
const recordVersion = 1

// ErrBadRecord is returned (wrapped) when a stored record cannot be decoded.
var ErrBadRecord = errors.New("bad record encoding")

func encodeRecord(r *Record) []byte {
	b := make([]byte, 0, 2+16+5*binary.MaxVarintLen64+2*binary.MaxVarintLen32+len(r.LastError)+len(r.Payload))
	b = append(b, recordVersion, byte(r.Kind))
	b = append(b, r.Key[:]...)
	b = binary.AppendVarint(b, timeNanos(r.Created))
	b = binary.AppendUvarint(b, uint64(r.Attempts))
	b = binary.AppendVarint(b, timeNanos(r.NextAttempt))
	b = binary.AppendVarint(b, timeNanos(r.Expires))
	b = binary.AppendVarint(b, timeNanos(r.DeadAt))
	b = binary.AppendUvarint(b, uint64(len(r.LastError)))
	b = append(b, r.LastError...)
	b = binary.AppendUvarint(b, uint64(len(r.Payload)))
	b = append(b, r.Payload...)
	return b
}

// decodeRecord parses a stored value. The returned record does not alias b
// (bbolt memory is only valid inside its transaction).
func decodeRecord(seq uint64, b []byte) (Record, error) {
	d := decoder{b: b}
	var r Record
	r.Seq = seq
	if v := d.byte(); d.err == nil && v != recordVersion {
		return Record{}, fmt.Errorf("%w: version %d", ErrBadRecord, v)
	}
	r.Kind = Kind(d.byte())
	copy(r.Key[:], d.bytes(16))
	r.Created = nanosTime(d.varint())
	att := d.uvarint()
	if att > 1<<32-1 {
		d.fail("attempts overflow")
	}
	r.Attempts = uint32(att)
	r.NextAttempt = nanosTime(d.varint())
	r.Expires = nanosTime(d.varint())
	r.DeadAt = nanosTime(d.varint())
	r.LastError = string(d.bytes(d.length()))
	if p := d.bytes(d.length()); len(p) > 0 {
		r.Payload = append([]byte(nil), p...)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return Record{}, d.err
	}
	return r, nil
}

// decoder reads varint fields, remembering the first error so that the
// caller checks once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadRecord, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail("short")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// length reads a length prefix and checks it against what is left, so that a
// corrupt length cannot make us allocate gigabytes.
func (d *decoder) length() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail("length exceeds data")
		return 0
	}
	return int(v)
}

func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func keySeq(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}
