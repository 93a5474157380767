package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// Load tuning: entries per pipeline, and concurrent pipelines (measured on
// 2 cores: four concurrent go-redis pipelines load as fast as
// redis-cli --pipe).
const (
	writeChunk   = 8192
	readChunk    = 512
	loadWorkers  = 4
	sentinelName = ""
)

// stager loads one version: it buffers entries, then writes them grouped by
// bucket with a few concurrent pipelines.
type stager struct {
	s    *Store
	inc  string
	v    uint64
	info infoJSON

	bits int // -1 until chosen
	buf  []store.Entry
	// A full buffer is written by a background goroutine while Put fills
	// the other one; at most one write is in flight.
	inflight chan error
	writing  []store.Entry // the buffer being written, reused when done
	// sentineled has a bit per bucket that holds its sentinel field; written
	// counts the entries written. Both are updated by the writer.
	sentineled []uint64
	written    uint64
	committed  bool
	aborted    bool
	// lease is renewed in the background until Commit or Abort.
	lease *store.LeaseKeeper
	// pacer (StageRequest.Pacer) is yielded to before each write pipeline
	// and between chunks of the read-back; nil: never. While it is busy,
	// write pipelines are short and one at a time (serial).
	pacer  store.Pacer
	serial sync.Mutex
}

// pause yields to the stager's pacer, if any.
func (st *stager) pause(ctx context.Context) error {
	if st.pacer == nil {
		return nil
	}
	return st.pacer.Yield(ctx)
}

// leaseErr is the stager's error once its lease is lost.
func (st *stager) leaseErr() error {
	if err := st.lease.Check(); err != nil {
		return fmt.Errorf("version %d: %w", st.v, err)
	}
	return nil
}

func (st *stager) Version() uint64 { return st.v }

// Put buffers entries and writes them when the buffer is full.
func (st *stager) Put(ctx context.Context, entries []store.Entry) error {
	if st.s.closed.Load() {
		return fmt.Errorf("%w: store closed", store.ErrUnavailable)
	}
	if st.committed || st.aborted {
		return fmt.Errorf("version %d is committed or aborted: %w", st.v, store.ErrNotStaged)
	}
	if err := st.leaseErr(); err != nil {
		return err
	}
	for i := range entries {
		if s := entries[i].Record.Status; s != store.Affected && s != store.UnderReview {
			return fmt.Errorf("redisstore: entry %d: status %s cannot be stored", i, s)
		}
	}
	for len(entries) > 0 {
		n := min(len(entries), st.s.stageBuffer-len(st.buf))
		if len(st.buf)+n > cap(st.buf) {
			// Doubled up to exactly the buffer size: append would go ~25%
			// beyond it (a small roster still gets a small buffer).
			grown := make([]store.Entry, len(st.buf), min(st.s.stageBuffer, max(2*cap(st.buf), len(st.buf)+n)))
			copy(grown, st.buf)
			st.buf = grown
		}
		st.buf = append(st.buf, entries[:n]...)
		entries = entries[n:]
		if len(st.buf) >= st.s.stageBuffer {
			if err := st.startWrite(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// startWrite hands the full buffer to a background writer, once the
// previous write is done.
func (st *stager) startWrite(ctx context.Context) error {
	if err := st.wait(); err != nil {
		return err
	}
	if err := st.chooseBits(ctx, false); err != nil {
		return err
	}
	buf := st.buf
	st.buf, st.writing = st.writing[:0], buf
	done := make(chan error, 1)
	st.inflight = done
	go func() { done <- st.write(ctx, buf) }()
	return nil
}

// wait waits for the write in flight, if any, and returns its error.
func (st *stager) wait() error {
	if st.inflight == nil {
		return nil
	}
	err := <-st.inflight
	st.inflight = nil
	return err
}

// chooseBits picks the version's bucket count and records it before any
// record is written, so that Abort and DeleteVersion know which keys exist.
func (st *stager) chooseBits(ctx context.Context, final bool) error {
	if st.bits >= 0 {
		return nil
	}
	var bits uint8
	switch {
	case st.s.fixedBits >= 0:
		bits = uint8(st.s.fixedBits)
	case final:
		bits = bitsFor(uint64(len(st.buf)), st.s.fill)
	default:
		// The roster does not fit in the buffer: assume it is at least four
		// buffers long (2 million entries, 65536 buckets, by default).
		bits = bitsFor(4*uint64(st.s.stageBuffer), st.s.fill)
	}
	ok, err := st.s.runScript(ctx, setBitsScript, []string{st.s.versionsKey(st.inc)}, st.v, bits)
	if err != nil {
		return err
	}
	switch ok {
	case int64(1):
	case int64(2):
		return fmt.Errorf("version %d: %w", st.v, store.ErrLeaseExpired)
	default:
		return fmt.Errorf("version %d is no longer staging: %w", st.v, store.ErrNotStaged)
	}
	st.bits = int(bits)
	st.sentineled = make([]uint64, (1<<bits+63)/64)
	st.s.bitsCache.Store(versionRef{st.inc, st.v}, bits)
	return nil
}

// bitsFor is the smallest bit count that puts at most fill entries per
// bucket on average.
func bitsFor(n uint64, fill int) uint8 {
	var b uint8
	for b < maxBits && n>>b > uint64(fill) {
		b++
	}
	return b
}

// flush waits for the write in flight and writes what is buffered.
func (st *stager) flush(ctx context.Context, final bool) error {
	if err := st.wait(); err != nil {
		return err
	}
	if err := st.chooseBits(ctx, final); err != nil {
		return err
	}
	err := st.write(ctx, st.buf)
	st.buf = st.buf[:0]
	return err
}

// write writes buf grouped by bucket (a counting sort), so that each HSET
// carries every buffered field of one bucket.
func (st *stager) write(ctx context.Context, buf []store.Entry) error {
	if len(buf) == 0 {
		return nil
	}
	// A loader that lost its lease writes nothing more: a collector may be
	// deleting the version's records.
	if err := st.leaseErr(); err != nil {
		return err
	}
	bits := uint8(st.bits)
	nb := 1 << bits
	starts := make([]int, nb+1)
	for i := range buf {
		starts[bucket(buf[i].Key, bits)+1]++
	}
	for b := 0; b < nb; b++ {
		starts[b+1] += starts[b]
	}
	idx := make([]int32, len(buf))
	next := slices.Clone(starts[:nb])
	for i := range buf {
		b := bucket(buf[i].Key, bits)
		idx[next[b]] = int32(i)
		next[b]++
	}
	// Chunks of about writeChunk entries, cut at bucket boundaries.
	type span struct{ lo, hi int }
	var chunks []span
	for lo := 0; lo < nb; {
		hi := lo + 1
		for hi < nb && starts[hi]-starts[lo] < writeChunk {
			hi++
		}
		chunks = append(chunks, span{lo, hi})
		lo = hi
	}
	err := parallel(len(chunks), func(i int) error {
		return st.writeBuckets(ctx, buf, chunks[i].lo, chunks[i].hi, starts, idx, bits)
	})
	if err != nil {
		return err
	}
	for b := 0; b < nb; b++ {
		if starts[b+1] > starts[b] {
			st.sentineled[b/64] |= 1 << (b % 64)
		}
	}
	st.written += uint64(len(buf))
	return nil
}

// busyChunk is the entries per write pipeline while reads are in flight:
// under appendfsync always, Redis answers nothing in an event loop
// iteration that wrote before its fsync (~1.5 ms here), and reads ~16 KiB of
// a pipeline per iteration; 1,024 entries (~35 KiB) keep a pipeline to a
// few iterations.
const busyChunk = writeChunk / 8

// writeBuckets writes the buffered entries of buckets lo..hi-1: in one
// pipeline, or while the pacer is busy in pipelines of about busyChunk
// entries, one worker at a time, each after a yield.
// buf[idx[starts[b]:starts[b+1]]] are bucket b's.
func (st *stager) writeBuckets(ctx context.Context, buf []store.Entry, lo, hi int, starts []int, idx []int32, bits uint8) error {
	for lo < hi {
		end := hi
		busy := st.pacer != nil && st.pacer.Busy()
		if busy {
			st.serial.Lock()
			for end = lo + 1; end < hi && starts[end]-starts[lo] < busyChunk; end++ {
			}
		}
		err := st.pause(ctx)
		if err == nil {
			err = st.pipeline(ctx, buf, lo, end, starts, idx)
		}
		if busy {
			st.serial.Unlock()
		}
		if err != nil {
			return err
		}
		lo = end
	}
	return nil
}

// pipeline writes the buffered entries of buckets lo..hi-1 in one pipeline.
func (st *stager) pipeline(ctx context.Context, buf []store.Entry, lo, hi int, starts []int, idx []int32) error {
	p := st.s.c.Pipeline()
	var rec []byte
	for b := lo; b < hi; b++ {
		members := idx[starts[b]:starts[b+1]]
		if len(members) == 0 {
			continue
		}
		args := make([]any, 0, 2+2*len(members))
		if st.sentineled[b/64]&(1<<(b%64)) == 0 {
			args = append(args, sentinelName, "") // the bucket's first write
		}
		for _, i := range members {
			e := &buf[i]
			rec = store.AppendRecord(rec[:0], e.Record)
			args = append(args, string(e.Key[:]), string(rec))
		}
		p.HSet(ctx, st.s.recordsKey(st.inc, st.v, uint32(b)), args...)
	}
	if p.Len() == 0 {
		return nil
	}
	_, err := p.Exec(ctx)
	return unavailable(err)
}

// parallel runs fn(0..n-1) on loadWorkers goroutines and returns the first
// error.
func parallel(n int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < min(loadWorkers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// Commit writes what is buffered, reads every bucket back (writing its
// sentinel on the way) to verify count and digest, then marks the version
// staged together with its manifest.
func (st *stager) Commit(ctx context.Context, m store.Manifest, want store.Digest, wantCount uint64) (store.VersionInfo, error) {
	if st.committed || st.aborted {
		return store.VersionInfo{}, fmt.Errorf("version %d is committed or aborted: %w", st.v, store.ErrNotStaged)
	}
	if err := st.leaseErr(); err != nil {
		return store.VersionInfo{}, err
	}
	if err := st.wait(); err != nil {
		return store.VersionInfo{}, err
	}
	if err := st.flush(ctx, st.written == 0); err != nil {
		return store.VersionInfo{}, err
	}
	bits := uint8(st.bits)
	if err := st.writeSentinels(ctx, bits); err != nil {
		return store.VersionInfo{}, err
	}
	counts, err := store.Verify(m, want, wantCount, func(fn func(store.Entry) error) error {
		var mu sync.Mutex
		return st.s.readBuckets(ctx, st.inc, st.v, bits, func(entries []store.Entry) error {
			// Pausing here holds back the reader that read this chunk.
			if err := st.pause(ctx); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range entries {
				if err := fn(e); err != nil {
					return err
				}
			}
			return nil
		}, false)
	})
	if err != nil {
		if errors.Is(err, store.ErrVerify) {
			if aerr := st.Abort(ctx); aerr != nil {
				return store.VersionInfo{}, fmt.Errorf("%w (abort failed: %v)", err, aerr)
			}
		}
		return store.VersionInfo{}, err
	}
	info := st.info
	info.Digest, info.Counts = want.String(), counts
	ib, err := json.Marshal(info)
	if err != nil {
		return store.VersionInfo{}, err
	}
	mb, err := json.Marshal(manifestJSON{Spec: m.Spec, Cohorts: m.Cohorts, Practices: m.Practices, PracticeCounts: m.PracticeCounts})
	if err != nil {
		return store.VersionInfo{}, err
	}
	ok, err := st.s.runScript(ctx, commitScript, st.s.feedKeys(st.s.versionsKey(st.inc), st.s.manifestKey(st.inc, st.v)), st.s.feedArgs(st.inc, st.v, ib, mb)...)
	if err != nil {
		return store.VersionInfo{}, err
	}
	switch ok {
	case int64(1):
	case int64(2):
		return store.VersionInfo{}, fmt.Errorf("version %d: %w", st.v, store.ErrLeaseExpired)
	default:
		return store.VersionInfo{}, fmt.Errorf("version %d is no longer staging: %w", st.v, store.ErrNotStaged)
	}
	st.committed = true
	st.lease.Stop()
	return decodeInfo(st.inc, st.v, string(ib), "2", "")
}

// writeSentinels writes the sentinel of every bucket that received no
// record.
func (st *stager) writeSentinels(ctx context.Context, bits uint8) error {
	if err := st.leaseErr(); err != nil {
		return err
	}
	p := st.s.c.Pipeline()
	for b := uint32(0); b < 1<<bits; b++ {
		if st.sentineled[b/64]&(1<<(b%64)) == 0 {
			p.HSet(ctx, st.s.recordsKey(st.inc, st.v, b), sentinelName, "")
		}
		if p.Len() >= writeChunk {
			if _, err := p.Exec(ctx); err != nil {
				return unavailable(err)
			}
		}
	}
	_, err := p.Exec(ctx)
	return unavailable(err)
}

// Abort marks the version aborted and deletes its records. It does nothing
// after a successful Commit.
func (st *stager) Abort(ctx context.Context) error {
	if st.committed {
		return nil
	}
	st.lease.Stop()
	_ = st.wait() // the version goes anyway
	st.buf, st.writing, st.aborted = nil, nil, true
	return st.s.abort(ctx, st.inc, st.v)
}

func (s *Store) abort(ctx context.Context, inc string, v uint64) error {
	ok, err := s.runScript(ctx, abortScript, []string{s.versionsKey(inc)}, v)
	if err != nil {
		return err
	}
	if ok != int64(1) {
		return nil // staged or published meanwhile: kept
	}
	bits, set, err := s.bitsOf(ctx, inc, v)
	if err != nil || !set {
		return err
	}
	// Interrupted here, the version stays aborted with its bucket count:
	// CollectStages finishes the job.
	if err := s.unlinkRecords(ctx, inc, v, bits); err != nil {
		return err
	}
	_, err = s.clearAborted(ctx, inc, v, collectGrace)
	return err
}

// unlinkRecords deletes every bucket of a version.
func (s *Store) unlinkRecords(ctx context.Context, inc string, v uint64, bits uint8) error {
	n := 1 << bits
	return parallel((n+writeChunk-1)/writeChunk, func(i int) error {
		_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for b := i * writeChunk; b < min(n, (i+1)*writeChunk); b++ {
				p.Unlink(ctx, s.recordsKey(inc, v, uint32(b)))
			}
			return nil
		})
		return unavailable(err)
	})
}
