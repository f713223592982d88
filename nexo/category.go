package nexo

import "context"

// A category is everything the package knows about one MessageCategory:
// how its bodies are read and written on the wire, how it is served, and
// how it fails. Each lives in its own file (category_*.go) beside the
// mapping of its bodies; the codecs, the server's dispatch and its failure
// responses go through the table below, never through a switch of their
// own.
//
// Adding a category is one new file (its category type and body mappings)
// and one line in categories, plus its body fields in Request, Response and
// wireMessage (and wire5Message for v5) and its golden tests.
type category interface {
	name() MessageCategory
	traits() traits
	// requestFromWire validates the 3.x request body and sets r's body.
	requestFromWire(m *wireMessage, r *Request) *Error
	// requestToWire sets m's body from r; false when r has no body of this
	// category.
	requestToWire(r *Request, m *wireMessage) (bool, error)
	// responseToWire and responseFromWire map the 3.x response body, with
	// its Response status.
	responseToWire(r *Response, m *wireMessage) error
	responseFromWire(m *wireMessage, r *Response) *Error
	// serve answers a request whose header and body are valid and
	// addressed to this POI; nil means no response at all.
	serve(ctx context.Context, s *Server, req *Request) *Response
}

// traits are how a category is served.
type traits struct {
	// silent categories never answer (Abort, Event): a failure is a
	// rejection, and a Strict POI ignores them before a Login.
	silent bool
	// sessionless categories are served without a session (Event).
	sessionless bool
	// beforeLogin categories are served by a Strict POI before a Login.
	beforeLogin bool
}

// category5 is a category served in the Nexo v5 envelope too.
type category5 interface {
	category
	// request5FromWire maps the v5 request body (the header was accepted
	// and classified).
	request5FromWire(m *wire5Message, r *Request) *Error
	// request5ToWire sets m's body from r and returns its root; "" when r
	// has no body of this category.
	request5ToWire(r *Request, m *wire5Message) (string, error)
	// response5ToWire sets m's body from r and returns its root.
	response5ToWire(r *Response, m *wire5Message) (string, error)
}

// transaction is a category run as a journaled transaction (Payment,
// Reversal): its failures carry a body naming the POI transaction, as Nexo
// requires.
type transaction interface {
	category
	// failure sets r's body for a failure of req under POI transaction id
	// poiID.
	failure(r *Response, req *Request, poiID TransactionID)
}

// categories is every category the package serves, in the order a request
// with several bodies would be encoded (this package never makes one).
var categories = [...]category{
	loginCategory{},
	logoutCategory{},
	paymentCategory{},
	reversalCategory{},
	abortCategory{},
	transactionStatusCategory{},
	diagnosisCategory{},
	displayCategory{},
	getTotalsCategory{},
	reconciliationCategory{},
	eventCategory{},
}

// categoryOf returns the category named c, or nil when it is not served.
func categoryOf(c MessageCategory) category {
	for _, k := range categories {
		if k.name() == c {
			return k
		}
	}
	return nil
}

// answers reports whether a failure of category c is a response (else a
// rejection).
func answers(c MessageCategory) bool {
	k := categoryOf(c)
	return k != nil && !k.traits().silent
}

// answers5 is answers for a message in the v5 envelope.
func answers5(c MessageCategory) bool {
	_, v5 := categoryOf(c).(category5)
	return v5 && answers(c)
}
