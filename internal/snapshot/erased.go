package snapshot

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/store"
)

// erasedFilter drops the entries of tombstoned subjects (closed accounts,
// erasure.Service.Erase) from the batches a load hands to a stager, and
// digests and counts what it keeps (in total and per practice), so that
// the version is committed with the digest and counts of its actual
// content. It never learns a subject id: it sees keys only.
type erasedFilter struct {
	st          store.Erasure
	kept        *store.Digester
	perPractice *store.PracticeCounter
	dropped     uint64
	keys        []store.Key
}

func newErasedFilter(st store.Erasure, practices []string, cohorts int) *erasedFilter {
	return &erasedFilter{st: st, kept: store.NewDigester(practices), perPractice: store.NewPracticeCounter(len(practices), cohorts)}
}

// put asks the store which of batch's subjects are tombstoned (one call
// per batch), drops them, and puts the rest. It reorders nothing and may
// overwrite batch.
func (f *erasedFilter) put(ctx context.Context, stager store.Stager, batch []store.Entry) error {
	if len(batch) == 0 {
		return nil
	}
	f.keys = f.keys[:0]
	for _, e := range batch {
		f.keys = append(f.keys, e.Key)
	}
	erased, err := f.st.Tombstoned(ctx, f.keys)
	if err != nil {
		return fmt.Errorf("check closed accounts: %w", err)
	}
	n := 0
	for i, e := range batch {
		if erased[i] {
			f.dropped++
			continue
		}
		if err := f.kept.Add(e); err != nil {
			return err
		}
		if err := f.perPractice.Add(e.Record); err != nil {
			return err
		}
		batch[n] = e
		n++
	}
	if n == 0 {
		return nil
	}
	return stager.Put(ctx, batch[:n])
}
