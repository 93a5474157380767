package embedded

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// bucketAudit is the root bucket of the audit trail: <seq> -> event, seq
// an 8-byte big-endian number from the bucket's sequence (so keys sort in
// append order and are never reused).
var bucketAudit = []byte("audit")

// AppendAudit appends e to the audit trail in one (fsynced) transaction.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	b, err := store.MarshalAudit(e)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		ab, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		seq, err := ab.NextSequence()
		if err != nil {
			return err
		}
		return ab.Put(u64(seq), b)
	})
}

// ListAudit returns up to limit events after afterSeq, of one incident or
// of all. A filtered listing reads past the other incidents' events.
func (s *Store) ListAudit(ctx context.Context, incident string, afterSeq uint64, limit int) ([]store.AuditEvent, error) {
	limit = store.AuditLimit(limit)
	var out []store.AuditEvent
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ab := tx.Bucket(bucketAudit)
		if ab == nil {
			return nil
		}
		c := ab.Cursor()
		for k, v := c.Seek(u64(afterSeq + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			if len(k) != 8 {
				return corrupt("audit key", fmt.Errorf("length %d", len(k)))
			}
			seq := binary.BigEndian.Uint64(k)
			if seq <= afterSeq {
				continue // afterSeq+1 overflowed
			}
			e, err := store.UnmarshalAudit(seq, v)
			if err != nil {
				return corrupt("audit event", err)
			}
			if incident != "" && e.Incident != incident {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
