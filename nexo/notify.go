package nexo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/termagent/termagent/internal/webhook"
)

// Notify sends an EventNotification to the POS event URL (Nexo 3.x JSON,
// protected when a Key is configured). When the POS cannot be reached the
// event is queued in the Outbox for later delivery with DeliverEvent; Notify
// then returns nil.
func (s *Server) Notify(ctx context.Context, ev EventNotification) error {
	if s.cfg.EventURL == "" {
		return errors.New("nexo notify: no event URL configured")
	}
	s.mu.Lock()
	saleID := s.lastSale
	s.mu.Unlock()
	pe, err := s.SealEvent(ev, saleID)
	if err != nil {
		return err
	}
	derr := DeliverEvent(ctx, s.cfg.EventClient, pe)
	if derr == nil {
		return nil
	}
	if s.deps.Outbox == nil {
		return fmt.Errorf("nexo notify: %w (no outbox)", derr)
	}
	s.log.Warn("nexo event not delivered; queued", "event", ev.EventToNotify, "err", derr)
	if err := s.deps.Outbox.EnqueueEvent(ctx, pe); err != nil {
		return fmt.Errorf("nexo notify: queue after %v: %w", derr, err)
	}
	return nil
}

// SealEvent encodes ev as an EventNotification request for the POS event URL
// (Nexo 3.x JSON, protected when a Key is configured) with saleID in its
// header, ready to be delivered now or queued: the outbox delivers it with
// DeliverEvent, the same bytes on every attempt, so a POS can tell a
// redelivery by its ServiceID.
func (s *Server) SealEvent(ev EventNotification, saleID string) (PendingEvent, error) {
	if s.cfg.EventURL == "" {
		return PendingEvent{}, errors.New("nexo notify: no event URL configured")
	}
	if ev.TimeStamp.IsZero() {
		ev.TimeStamp = s.now()
	}
	// ServiceIDs must stay unique across restarts too: derive them from the clock
	// (microseconds in base 36: 10 characters), strictly increasing.
	s.mu.Lock()
	s.eventSeq = max(s.eventSeq+1, uint64(s.now().UnixMicro()))
	seq := s.eventSeq
	s.mu.Unlock()
	req := &Request{
		Header: Header{
			ProtocolVersion: "3.0", Class: ClassEvent, Category: CategoryEvent, Type: TypeNotification,
			ServiceID: strconv.FormatUint(seq, 36), SaleID: saleID, POIID: s.cfg.POIID,
		},
		Event: &ev,
	}
	body, err := sealRequest(JSONCodec{}, s.cfg.Key, req)
	if err != nil {
		return PendingEvent{}, fmt.Errorf("nexo notify: %w", err)
	}
	return PendingEvent{URL: s.cfg.EventURL, ContentType: JSONCodec{}.ContentType(), Body: body}, nil
}

// defaultEventTimeout bounds one delivery of an event to the POS when no client
// is configured: a POS that accepts the connection and never answers must not
// hold the notifier (or the outbox) forever.
const defaultEventTimeout = 5 * time.Second

// eventClient is client, or when nil one bounded by defaultEventTimeout.
func eventClient(client *http.Client) *http.Client {
	if client == nil {
		return &http.Client{Timeout: defaultEventTimeout}
	}
	return client
}

// DeliverEvent POSTs a pending event to the POS with client (nil: a client
// with a 5 s timeout); any non-2xx status is an error so that the outbox keeps
// the event.
func DeliverEvent(ctx context.Context, client *http.Client, ev PendingEvent) error {
	if err := webhook.Post(ctx, eventClient(client), ev.URL, ev.ContentType, ev.Body, nil); err != nil {
		return fmt.Errorf("deliver nexo event to the POS: %w", err)
	}
	return nil
}

// sealRequest encodes a request, protected with key when key is not nil.
func sealRequest(c wireCodec, key *Key, req *Request) ([]byte, error) {
	wm, err := requestToWire(req)
	if err != nil {
		return nil, err
	}
	b, err := c.encodeWire(rootRequest, wm)
	if err != nil || key == nil {
		return b, err
	}
	return key.sealMessage(c, rootRequest, wm.MessageHeader, b, nil)
}
