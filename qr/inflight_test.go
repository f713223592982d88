package qr

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
)

func TestInFlightNamesOnlyRunningPayments(t *testing.T) {
	e := &Engine{byClient: map[string]*txn{}, byID: map[string]*txn{}}
	tx := &txn{ctid: "c1"}
	require.NoError(t, e.register(tx))
	e.index(tx, "qr-1")
	require.True(t, e.InFlight(ppaas.Event{ClientTransactionID: "c1"}))
	require.True(t, e.InFlight(ppaas.Event{TransactionID: "qr-1"}))
	require.False(t, e.InFlight(ppaas.Event{ClientTransactionID: "c2", TransactionID: "qr-2"}))
	require.False(t, e.InFlight(ppaas.Event{}))
	e.unregister(tx)
	require.False(t, e.InFlight(ppaas.Event{ClientTransactionID: "c1", TransactionID: "qr-1"}))
}
