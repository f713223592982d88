package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Transaction aliases: another name a transaction is known by — to the
// agent, the PPaaS transaction id of a payment, the only id some PPaaS events
// carry. A transition with Alias set indexes its transaction under it (the
// last transaction given an alias owns it); TxnByAlias finds it; the entries
// go with their transaction. Files written before the index get an empty one
// at Open: their transactions are found by id only.
var (
	bucketAlias   = []byte("journal.alias")     // alias → id
	bucketAliasOf = []byte("journal.alias.txn") // schema 1: id \x00 alias → nil: what to delete with id
)

// MaxAliasLen bounds an alias (a peer's id): a longer one is not indexed.
const MaxAliasLen = 256

// ensureAliasIndex creates the alias buckets of a file that has none.
func (s *Store) ensureAliasIndex() error {
	err := guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketAlias, bucketAliasOf} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: index journal by alias: %w", s.path, err)
	}
	return nil
}

// putAlias indexes transaction id under alias, unless it is already. The
// index entry is noted pending (unindexed.go); what to delete with id is
// written now, beside the header this step rewrites anyway.
func (s *Store) putAlias(w *wtx, id []byte, alias string) error {
	if alias == "" || len(alias) > MaxAliasLen {
		return nil
	}
	owner, ok := s.aliasOwner(w, alias)
	if ok && owner == string(id) {
		return nil // most transitions repeat the alias: no write
	}
	// One pending entry at most names an alias, its owner's: applied in
	// any order (Open after a crash applies in start order), the entries
	// then give it to the last transaction given it, and passing it back
	// and forth does not grow them (TestPendingAliasOwnerSurvivesCrash,
	// TestPendingAliasesDoNotRepeat).
	if ok {
		if err := s.dropPendingAlias(w, []byte(owner), alias); err != nil {
			return err
		}
	}
	if err := s.notePending(w, id, func(e *pendingEntry) { e.aliases = append(e.aliases, alias) }); err != nil {
		return err
	}
	s.pend(w).alias[alias] = string(id)
	tx := w.tx
	var err error
	if s.opts.schema1Layout {
		err = tx.Bucket(bucketAliasOf).Put(append(append(append([]byte(nil), id...), 0), alias...), []byte{})
	} else {
		// What to delete with id, beside its header (txnLayout in journal.go).
		err = tx.Bucket(bucketTxn).Put(aliasOfKey(id, alias), []byte{})
	}
	if err != nil {
		return rollback{err} // after the step's header: all or nothing
	}
	return nil
}

// dropPendingAlias takes alias out of id's pending entry, if id has one:
// alias is being given to another transaction.
func (s *Store) dropPendingAlias(w *wtx, id []byte, alias string) error {
	if w.tx.Bucket(bucketUnindexed).Get(id) == nil {
		return nil // indexed already: the new owner's entry overwrites it
	}
	err := s.notePending(w, id, func(e *pendingEntry) {
		e.aliases = slices.DeleteFunc(e.aliases, func(a string) bool { return a == alias })
	})
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		// id's entry and header are both unreadable: its entry cannot be
		// rebuilt, and the apply drops it, so the alias goes to its new
		// owner anyway. Failing here would fail every step given the alias
		// (TestAliasMovesFromAnUnreadableOwner).
		s.log.Error("alias moved from a transaction whose journal entry is unreadable", "txn", string(id), "err", corrupt.Err)
		return nil
	}
	return err
}

// aliasOfKey is id \x00 be(0) alias: a transaction id has no NUL byte
// (checkRef), so the first one ends it; no transition is numbered 0 and the
// alias is not empty, so the key is no transition's (id \x00 be(n)), and the
// alias may hold any byte.
func aliasOfKey(id []byte, alias string) []byte {
	return append(append(append(make([]byte, 0, len(id)+9+len(alias)), id...), 0, 0, 0, 0, 0, 0, 0, 0, 0), alias...)
}

// deleteAliases removes the alias entries of transaction id: those of
// schema 1 in journal.alias.txn, and those beside its header.
func deleteAliases(tx *bolt.Tx, id []byte) error {
	idx := tx.Bucket(bucketAlias)
	if idx == nil {
		return nil
	}
	if err := deleteAliasesIn(idx, tx.Bucket(bucketAliasOf), append(append([]byte(nil), id...), 0), id); err != nil {
		return err
	}
	return deleteAliasesIn(idx, tx.Bucket(bucketTxn), aliasOfKey(id, ""), id)
}

// deleteAliasesIn deletes the keys prefix+alias of of, and alias from idx
// where it still names id.
func deleteAliasesIn(idx, of *bolt.Bucket, prefix, id []byte) error {
	if of == nil {
		return nil
	}
	var keys [][]byte
	c := of.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		alias := k[len(prefix):]
		if bytes.Equal(idx.Get(alias), id) { // not re-given to another transaction since
			if err := idx.Delete(alias); err != nil {
				return err
			}
		}
		if err := of.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// TxnByAlias returns the transaction indexed under alias (Transition.Alias);
// ok is false when none is. With dataOf given, only the transitions of those
// states carry their Data (see TxnByServiceID).
func (s *Store) TxnByAlias(ctx context.Context, alias string, dataOf ...string) (Txn, bool, error) {
	var (
		t  Txn
		ok bool
	)
	if alias == "" || len(alias) > MaxAliasLen {
		return Txn{}, false, nil
	}
	pid, pending := s.ovl.aliasOf(alias) // before the snapshot: unindexed.go
	err := s.view(func(tx *bolt.Tx) error {
		id := []byte(pid)
		if !pending {
			id = tx.Bucket(bucketAlias).Get([]byte(alias))
		}
		if id == nil {
			return nil
		}
		var err error
		t, err = readTxn(tx, string(id), dataOf...)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		ok = err == nil
		return err
	})
	if err != nil {
		return Txn{}, false, fmt.Errorf("look up transaction %q: %w", alias, err)
	}
	return t, ok, nil
}
