package replica

import (
	"sync"

	"github.com/impact-health/impact/internal/store"
)

type ref struct {
	incident string
	version  uint64
}

// incidentState is one incident as a replica holds it.
type incidentState struct {
	visible uint64
	table   *table // the visible version's records (nil while visible is 0)
	pins    map[store.Key]store.Pin
}

// memory is everything a replica answers from: per incident the visible
// version, its records and every pin; and the tombstones. (Versions loaded
// ahead of their publish are the Replica's loads.) Reads take the read
// lock; the one applier (the tail loop) takes the write lock for each
// change, briefly.
type memory struct {
	mu        sync.RWMutex
	incidents map[string]*incidentState
	tombs     map[store.Key]struct{}
}

func newMemory() *memory {
	return &memory{incidents: map[string]*incidentState{}, tombs: map[store.Key]struct{}{}}
}

// view answers a read; ok is false when memory cannot: an incident it has
// not seen a commit of (unknown, or only being loaded: the engine answers),
// or one whose visible version's records are not here.
func (m *memory) view(incident string, key store.Key) (store.View, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st, found := m.incidents[incident]
	if !found {
		return store.View{}, false
	}
	v := store.View{Visible: st.visible}
	if _, erased := m.tombs[key]; erased {
		v.Erased = true
		return v, true
	}
	if p, pinned := st.pins[key]; pinned {
		v.Pin = &p
	}
	if st.visible == 0 {
		return v, true
	}
	if st.table == nil {
		return store.View{}, false
	}
	v.Record = st.table.lookup(key)
	return v, true
}

// records answers Records for the visible version; ok is false otherwise.
func (m *memory) records(incident string, version uint64, keys []store.Key) ([]store.Record, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st, found := m.incidents[incident]
	if !found || st.visible != version || st.table == nil {
		return nil, false
	}
	out := make([]store.Record, len(keys))
	for i, k := range keys {
		out[i] = st.table.lookup(k)
	}
	return out, true
}

func (m *memory) incident(name string) *incidentState {
	st, ok := m.incidents[name]
	if !ok {
		st = &incidentState{pins: map[store.Key]store.Pin{}}
		m.incidents[name] = st
	}
	return st
}

// applyPin, applyTombstone, applyDeleted and flip apply one change each.

func (m *memory) applyPin(c store.Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, erased := m.tombs[c.Key]; erased {
		return
	}
	m.incident(c.Incident).pins[c.Key] = c.Pin
}

func (m *memory) applyTombstone(key store.Key) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tombs[key] = struct{}{}
	for _, st := range m.incidents {
		delete(st.pins, key)
	}
}

// known records that an incident exists (a version of it was committed).
func (m *memory) known(incident string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.incident(incident)
}

// flip makes version visible with its records t; the older table goes
// (pins hold copies of their records).
func (m *memory) flip(incident string, version uint64, t *table) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.incident(incident)
	st.visible, st.table = version, t
}

// stats reports what memory holds.
func (m *memory) stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var s Stats
	for _, st := range m.incidents {
		s.Incidents++
		s.Pins += len(st.pins)
		if st.table != nil {
			s.Records += len(st.table.keys)
			s.TableBytes += st.table.bytes()
		}
	}
	s.Tombstones = len(m.tombs)
	return s
}

// Stats is what a replica's memory holds.
type Stats struct {
	Incidents, Pins, Records, Staged, Tombstones int
	TableBytes                                   int
}
