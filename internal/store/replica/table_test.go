package replica

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

func randomEntries(seed uint64, n int) []store.Entry {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]store.Entry, n)
	for i := range out {
		binary.BigEndian.PutUint64(out[i].Key[:8], r.Uint64())
		binary.BigEndian.PutUint64(out[i].Key[8:], r.Uint64())
		out[i].Record = store.Record{Status: store.Status(1 + r.IntN(2)), Cohorts: 1 + r.Uint64N(7), Practice: r.Uint32N(300)}
	}
	return out
}

// TestTableLookup: every key finds its record, absent keys (and rows
// that say not affected) answer NotAffected, sorted or shuffled input.
func TestTableLookup(t *testing.T) {
	es := randomEntries(1, 50_000)
	es[7].Record = store.Record{} // an explicit not-affected row
	want := make(map[store.Key]store.Record, len(es))
	for _, e := range es {
		want[e.Key] = e.Record
	}
	for _, shuffled := range []bool{false, true} {
		in := append([]store.Entry(nil), es...)
		if shuffled {
			rand.New(rand.NewPCG(2, 2)).Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		} else {
			sortEntries(in)
		}
		b := newBuilder(uint64(len(in)))
		for _, e := range in {
			b.add(e)
		}
		tb := b.finish()
		for _, e := range es {
			if got := tb.lookup(e.Key); got != want[e.Key] {
				t.Fatalf("shuffled %v: lookup %x = %+v, want %+v", shuffled, e.Key, got, want[e.Key])
			}
		}
		for _, e := range randomEntries(3, 10_000) {
			if got := tb.lookup(e.Key); got != (store.Record{}) {
				t.Fatalf("absent key answered %+v", got)
			}
		}
		if len(tb.keys) != len(es)-1 {
			t.Fatalf("table keeps %d keys, want %d (not-affected rows are not kept)", len(tb.keys), len(es)-1)
		}
	}
}

func sortEntries(es []store.Entry) {
	slices.SortFunc(es, func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
}

// BenchmarkTable2M builds the in-memory form of a 2,000,000-entry version
// and looks keys up (a tenth present, as in the incident: most patients
// are not affected); it reports the bytes per entry.
func BenchmarkTable2M(b *testing.B) {
	es := randomEntries(1, 2_000_000)
	sortEntries(es)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bl := newBuilder(uint64(len(es)))
	for _, e := range es {
		bl.add(e)
	}
	tb := bl.finish()
	runtime.GC()
	runtime.ReadMemStats(&after)
	probes := randomEntries(9, 1<<16)
	for i := range probes {
		if i%10 == 0 {
			probes[i] = es[i*7%len(es)]
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = tb.lookup(probes[i&(len(probes)-1)].Key)
	}
	b.StopTimer()
	b.ReportMetric(float64(tb.bytes())/float64(len(es)), "B/entry")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(es)), "heapB/entry")
	runtime.KeepAlive(tb)
}
