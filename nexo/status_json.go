package nexo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// A TransactionStatus repeats a journaled response, and a POS asks about the
// same one again and again (after a timeout, while it polls an InProgress
// to its end, before it prints): encoding that response, receipts included,
// was most of the request's CPU (issue 17). The journal's Response is
// read-only while the journal hands the same one back (JournalEntry), so its
// Nexo 3.x JSON is too: the server keeps it, per SaleID, next to the
// Response it encodes, and puts it in the envelope as is. A Response the
// journal decoded anew (its entry changed) is another pointer, hence another
// encoding; a reprint is a copy, encoded as ever.

// repeatedCache is the JSON of the last journaled response repeated to each
// SaleID, at most ServerConfig.MaxLoggedIn of them.
type repeatedCache struct {
	mu sync.Mutex
	m  map[string]repeatedJSON
}

type repeatedJSON struct {
	rep  *Response // the journal's; holding it keeps its address its own
	json []byte
}

func (c *repeatedCache) get(saleID string, rep *Response) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[saleID]; ok && r.rep == rep {
		return r.json
	}
	return nil
}

func (c *repeatedCache) put(saleID string, rep *Response, b []byte, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]repeatedJSON{}
	}
	if _, ok := c.m[saleID]; !ok && len(c.m) >= limit {
		for k := range c.m { // any one: bounded, not clever
			delete(c.m, k)
			break
		}
	}
	c.m[saleID] = repeatedJSON{rep: rep, json: b}
}

func (c *repeatedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// repeatsJournaled tells a TransactionStatus response repeating the
// journal's own Response.
func repeatsJournaled(r *Response) bool {
	t := r.TransactionStatus
	return t != nil && t.journaled && t.Repeated != nil
}

// repeatedMember is how the repeated response enters its
// TransactionStatusResponse, the last member of that object.
const repeatedMember = `,"RepeatedMessageResponse":`

// encodeStatusJSON encodes resp, a TransactionStatus response repeating the
// journal's Response, in Nexo 3.x JSON, the same bytes JSONCodec writes
// (TestStatusJSONIsTheCodecs): the envelope without the repeated response,
// then the repeated response's JSON, kept from the last time this SaleID
// was repeated the same Response, spliced in as TransactionStatusResponse's
// last member. It returns the message header, for sealing.
func (s *Server) encodeStatusJSON(resp *Response) ([]byte, *wireHeader, error) {
	t := resp.TransactionStatus
	saleID := resp.Header.SaleID
	raw := s.repeated.get(saleID, t.Repeated)
	if raw == nil {
		w, err := repeatedToWire(t.Repeated)
		if err != nil {
			return nil, nil, err
		}
		if raw, err = json.Marshal(w); err != nil {
			return nil, nil, fmt.Errorf("encode nexo JSON: %w", err)
		}
		s.repeated.put(saleID, t.Repeated, raw, s.cfg.MaxLoggedIn)
	}
	outer, ts := *resp, *t
	ts.Repeated = nil
	outer.TransactionStatus = &ts
	wm, err := responseToWire(&outer)
	if err != nil {
		return nil, nil, err
	}
	b, err := JSONCodec{}.encodeWire(rootResponse, wm)
	if err != nil {
		return nil, nil, err
	}
	// b ends with the ends of TransactionStatusResponse (never empty: its
	// Response is always there), of the message and of the envelope.
	const tail = "}}}"
	if !bytes.HasSuffix(b, []byte(tail)) || bytes.HasSuffix(b, []byte("{"+tail)) {
		return nil, nil, fmt.Errorf("encode nexo JSON: TransactionStatusResponse is not the envelope's last member: %.64q", b[max(0, len(b)-64):])
	}
	out := make([]byte, 0, len(b)+len(repeatedMember)+len(raw))
	out = append(out, b[:len(b)-len(tail)]...)
	out = append(out, repeatedMember...)
	out = append(out, raw...)
	return append(out, tail...), wm.MessageHeader, nil
}
