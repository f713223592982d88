package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The tree of buckets (bbolt's root bucket: one entry per bucket, holding
// the bucket's root page id, or the whole bucket while it is small enough to
// be inline) is rewritten by every commit, from the leaf that holds each
// touched bucket's entry up to its root page. On a fresh file the indexes
// start inline and together outgrow a page: the tree splits into a branch
// and two leaves, and bbolt merges pages back only where a key is deleted,
// which never happens to a bucket entry. Once the indexes have their own
// pages the whole tree fits in one page again, yet every payment commit
// kept writing three pages for it (TestPaymentCommitsWriteOneRootPage).
//
// compactRoot gives the tree a deletion when its root is a branch: a
// scratch bucket created and deleted in the same transaction. bbolt then
// merges the leaf under the 25% fill threshold into its sibling and
// collapses a branch left with one child, at the commit that would have
// written those pages anyway; nothing of the scratch bucket reaches the
// file. A tree that does not fit one page stays as it is. The check reads
// one page header.
func compactRoot(tx *bolt.Tx) error {
	p, err := tx.Page(int(tx.Cursor().Bucket().Root()))
	if err != nil || p == nil || p.Type != "branch" {
		return err
	}
	name := []byte("\x00compact-root") // no bucket of the store starts with NUL
	if _, err := tx.CreateBucket(name); err != nil {
		return fmt.Errorf("compact the tree of buckets: %w", err)
	}
	if err := tx.DeleteBucket(name); err != nil {
		return fmt.Errorf("compact the tree of buckets: %w", err)
	}
	return nil
}
