package nexo

import "context"

type headerKey struct{}

// withHeader records the request header in the context handed to the payment
// engine, so that an engine can journal its work under the POS's SaleID and
// ServiceID.
func withHeader(ctx context.Context, h Header) context.Context {
	return context.WithValue(ctx, headerKey{}, h)
}

// HeaderFrom returns the header of the Nexo request that a payment engine call
// serves.
func HeaderFrom(ctx context.Context) (Header, bool) {
	h, ok := ctx.Value(headerKey{}).(Header)
	return h, ok
}
