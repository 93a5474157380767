package replica

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/impact-health/impact/internal/store"
)

// indexBits is the number of leading key bits the table indexes directly:
// subject keys are HMACs, uniform, so each of the 2^16 slots holds about
// entries/65536 keys (31 for 2,000,000) and a lookup is one index read and
// a short binary search.
const indexBits = 16

// table is one version's records in memory, in a compact, immutable form:
// the sorted keys (16 bytes each), one 4-byte reference per key into the
// version's distinct records (a roster has few distinct combinations of
// status, cohorts and practice), and an index of where each key prefix
// starts. About 20 bytes per entry plus 256 KiB of index.
type table struct {
	index    []uint32 // 1<<indexBits + 1 offsets into keys
	keys     []store.Key
	refs     []uint32
	distinct []store.Record
}

// lookup returns the key's record (NotAffected when absent).
func (t *table) lookup(k store.Key) store.Record {
	p := uint32(k[0])<<8 | uint32(k[1])
	lo, hi := int(t.index[p]), int(t.index[p+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := compareKeys(&t.keys[m], &k); {
		case c == 0:
			return t.distinct[t.refs[m]]
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return store.Record{}
}

func compareKeys(a, b *store.Key) int {
	x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if x == y {
		x, y = binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	}
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// bytes is the table's size in memory (its slices' capacities).
func (t *table) bytes() int {
	return 4*cap(t.index) + store.KeySize*cap(t.keys) + 4*cap(t.refs) + 24*cap(t.distinct)
}

// builder assembles a table from entries in any order (sorted input, as a
// version scan gives, costs no sort).
type builder struct {
	t      table
	ids    map[store.Record]uint32
	sorted bool
}

func newBuilder(sizeHint uint64) *builder {
	n := int(min(sizeHint, 1<<26))
	return &builder{
		t:      table{keys: make([]store.Key, 0, n), refs: make([]uint32, 0, n)},
		ids:    map[store.Record]uint32{},
		sorted: true,
	}
}

func (b *builder) add(e store.Entry) {
	if e.Record == (store.Record{}) {
		return // absent means not affected: nothing to keep
	}
	id, ok := b.ids[e.Record]
	if !ok {
		id = uint32(len(b.t.distinct))
		b.ids[e.Record] = id
		b.t.distinct = append(b.t.distinct, e.Record)
	}
	if n := len(b.t.keys); n > 0 && b.sorted && compareKeys(&b.t.keys[n-1], &e.Key) >= 0 {
		b.sorted = false
	}
	b.t.keys = append(b.t.keys, e.Key)
	b.t.refs = append(b.t.refs, id)
}

func (b *builder) finish() *table {
	t := &b.t
	if !b.sorted {
		idx := make([]int, len(t.keys))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(i, j int) int { return bytes.Compare(t.keys[i][:], t.keys[j][:]) })
		keys, refs := make([]store.Key, len(idx)), make([]uint32, len(idx))
		for i, j := range idx {
			keys[i], refs[i] = t.keys[j], t.refs[j]
		}
		t.keys, t.refs = keys, refs
	}
	t.keys, t.refs = slices.Clip(t.keys), slices.Clip(t.refs)
	t.index = make([]uint32, 1<<indexBits+1)
	j := 0
	for p := 0; p < 1<<indexBits; p++ {
		t.index[p] = uint32(j)
		for j < len(t.keys) && int(t.keys[j][0])<<8|int(t.keys[j][1]) == p {
			j++
		}
	}
	t.index[1<<indexBits] = uint32(j)
	return t
}
