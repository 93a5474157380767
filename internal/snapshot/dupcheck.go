package snapshot

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/impact-health/impact/internal/store"
)

// keyBlock is how many keys one block of the duplicate check holds
// (640 KiB).
const keyBlock = 1 << 15

// keyRow is a subject key with the row it was on: 20 bytes.
type keyRow struct {
	key store.Key
	row uint32
}

func compareKeyRows(a, b keyRow) int {
	if c := cmp.Compare(binary.BigEndian.Uint64(a.key[:8]), binary.BigEndian.Uint64(b.key[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(a.key[8:]), binary.BigEndian.Uint64(b.key[8:])); c != 0 {
		return c
	}
	return cmp.Compare(a.row, b.row)
}

// rowKeys collects the subject keys of a roster for the duplicate check in
// blocks of keyBlock, each sorted once full: its memory is 20 bytes a row
// and never a second copy, as one growing slice would need while it grows
// (twice the roster's keys at the last growth). Sorting a block while the
// roster is still read leaves the merge for the end.
type rowKeys struct {
	blocks [][]keyRow
}

func (k *rowKeys) add(key store.Key, row int) {
	n := len(k.blocks)
	if n == 0 || len(k.blocks[n-1]) == keyBlock {
		if n > 0 {
			slices.SortFunc(k.blocks[n-1], compareKeyRows)
		}
		size := keyBlock
		if n == 0 {
			size = 64 // small rosters stay small: the first block grows
		}
		k.blocks = append(k.blocks, make([]keyRow, 0, size))
		n++
	}
	k.blocks[n-1] = append(k.blocks[n-1], keyRow{key, uint32(row)})
}

// each calls fn with every key in (key, row) order: a merge of the sorted
// blocks. pause, if set, is called every keyBlock keys.
func (k *rowKeys) each(fn func(keyRow), pause func() error) error {
	if n := len(k.blocks); n > 0 {
		slices.SortFunc(k.blocks[n-1], compareKeyRows) // the last, partial block
	}
	// A binary min-heap of the blocks' remaining keys, by their first.
	h := make([][]keyRow, 0, len(k.blocks))
	for _, b := range k.blocks {
		if len(b) > 0 {
			h = append(h, b)
		}
	}
	less := func(i, j int) bool { return compareKeyRows(h[i][0], h[j][0]) < 0 }
	down := func(i int) {
		for {
			m, l, r := i, 2*i+1, 2*i+2
			if l < len(h) && less(l, m) {
				m = l
			}
			if r < len(h) && less(r, m) {
				m = r
			}
			if m == i {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		down(i)
	}
	for done := 1; len(h) > 0; done++ {
		fn(h[0][0])
		if h[0] = h[0][1:]; len(h[0]) == 0 {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		down(0)
		if pause != nil && done%keyBlock == 0 {
			if err := pause(); err != nil {
				return err
			}
		}
	}
	return nil
}

// duplicates reports every row whose subject appeared on an earlier row,
// naming the first such row. It keeps the errors with the lowest row
// numbers when there are more than the list holds. An error is pause's.
func duplicates(keys *rowKeys, errs *errorList, pause func() error) error {
	var dups []RowError
	flush := func() {
		slices.SortFunc(dups, func(a, b RowError) int { return cmp.Compare(a.Row, b.Row) })
		if len(dups) > errs.max {
			dups = dups[:errs.max]
		}
	}
	var first keyRow
	started := false
	err := keys.each(func(kr keyRow) {
		if !started || kr.key != first.key {
			first, started = kr, true
			return
		}
		errs.total++
		dups = append(dups, RowError{
			Row:   int(kr.row),
			Field: "subject_id",
			Rule:  fmt.Sprintf("duplicate subject (first on row %d)", first.row),
		})
		if len(dups) >= 4*errs.max {
			flush()
		}
	}, pause)
	if err != nil || len(dups) == 0 {
		return err
	}
	// Merge with the errors found while streaming: keep the lowest rows.
	flush()
	all := append(errs.errs, dups...)
	slices.SortStableFunc(all, func(a, b RowError) int { return cmp.Compare(a.Row, b.Row) })
	if len(all) > errs.max {
		all = all[:errs.max]
	}
	errs.errs = all
	return nil
}
