package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

func auditEvent(i int, incident string) store.AuditEvent {
	e := store.AuditEvent{
		At:       T0.Add(time.Duration(i) * time.Second),
		Actor:    fmt.Sprintf("ops-%d", i%3),
		Action:   []string{store.AuditUpload, store.AuditPublish, store.AuditGC, store.AuditClaimWave}[i%4],
		Incident: incident,
		Version:  uint64(i),
		Outcome:  store.OutcomeOK,
		Detail:   fmt.Sprintf("event %d: 1,234 entries", i),
	}
	if i%2 == 0 {
		e.Digest[0], e.Digest[31] = byte(i), 0xee
	}
	return e
}

func sameAudit(a, b store.AuditEvent) bool {
	return a.Seq == b.Seq && a.At.Equal(b.At) && a.Actor == b.Actor && a.Action == b.Action && a.Incident == b.Incident &&
		a.Version == b.Version && a.Digest == b.Digest && a.Outcome == b.Outcome && a.Detail == b.Detail
}

func listAudit(t *testing.T, s store.Store, incident string, after uint64, limit int) []store.AuditEvent {
	t.Helper()
	es, err := s.ListAudit(context.Background(), incident, after, limit)
	if err != nil {
		t.Fatalf("ListAudit(%q, %d, %d): %v", incident, after, limit, err)
	}
	return es
}

func seqs(es []store.AuditEvent) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// testAudit: events are numbered 1, 2, 3... in append order, round-trip
// whole, and list in order, filtered by incident and paged by sequence.
func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	if es := listAudit(t, s, "", 0, 10); len(es) != 0 {
		t.Fatalf("fresh store lists %d audit events", len(es))
	}
	var want []store.AuditEvent
	for i := 1; i <= 12; i++ {
		inc := []string{"audit-a", "audit-b", ""}[i%3] // "": an erase, of no incident
		e := auditEvent(i, inc)
		e.Seq = 1000 // ignored
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		e.Seq = uint64(i)
		want = append(want, e)
	}
	all := listAudit(t, s, "", 0, 100)
	if len(all) != len(want) {
		t.Fatalf("%d events listed, want %d", len(all), len(want))
	}
	for i := range want {
		if !sameAudit(all[i], want[i]) {
			t.Fatalf("event %d: got %+v, want %+v", i, all[i], want[i])
		}
	}
	// Paging: every page starts after the last one.
	var paged []uint64
	for after := uint64(0); ; {
		page := listAudit(t, s, "", after, 5)
		if len(page) > 5 {
			t.Fatalf("page of %d events, limit 5", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, seqs(page)...)
		after = page[len(page)-1].Seq
	}
	if !slices.Equal(paged, seqs(want)) {
		t.Errorf("paged listing %v, want %v", paged, seqs(want))
	}
	// Filtering, with paging.
	var wantB []uint64
	for _, e := range want {
		if e.Incident == "audit-b" {
			wantB = append(wantB, e.Seq)
		}
	}
	if got := seqs(listAudit(t, s, "audit-b", 0, 100)); !slices.Equal(got, wantB) {
		t.Errorf("audit-b: %v, want %v", got, wantB)
	}
	page := listAudit(t, s, "audit-b", 0, 2)
	if got := seqs(page); !slices.Equal(got, wantB[:2]) {
		t.Errorf("audit-b first page: %v, want %v", got, wantB[:2])
	}
	if got := seqs(listAudit(t, s, "audit-b", page[1].Seq, 100)); !slices.Equal(got, wantB[2:]) {
		t.Errorf("audit-b after %d: %v, want %v", page[1].Seq, got, wantB[2:])
	}
	if es := listAudit(t, s, "audit-none", 0, 100); len(es) != 0 {
		t.Errorf("unknown incident lists %d events", len(es))
	}
	if es := listAudit(t, s, "", 12, 100); len(es) != 0 {
		t.Errorf("after the last event: %d events", len(es))
	}
	if es := listAudit(t, s, "", 0, 0); len(es) != len(want) {
		t.Errorf("limit 0 (the maximum page) listed %d events, want %d", len(es), len(want))
	}
}

// testAuditAppendOnly: concurrent appends all land with distinct,
// consecutive numbers; other store operations change no event.
func testAuditAppendOnly(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := auditEvent(i, fmt.Sprintf("audit-w%d", w))
				e.Detail = fmt.Sprintf("w%d-%d", w, i)
				if err := s.AppendAudit(ctx, e); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	before := listAudit(t, s, "", 0, 0)
	if len(before) != workers*each {
		t.Fatalf("%d events after %d concurrent appends", len(before), workers*each)
	}
	details := map[string]bool{}
	for i, e := range before {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has number %d: numbers must run 1, 2, 3...", i, e.Seq)
		}
		details[e.Detail] = true
	}
	if len(details) != workers*each {
		t.Fatalf("%d distinct events, want %d", len(details), workers*each)
	}
	// Per worker, in the order it appended.
	for w := range workers {
		var got []string
		for _, e := range listAudit(t, s, fmt.Sprintf("audit-w%d", w), 0, 0) {
			got = append(got, e.Detail)
		}
		for i := range each {
			if i >= len(got) || got[i] != fmt.Sprintf("w%d-%d", w, i) {
				t.Fatalf("worker %d's events out of order: %v", w, got)
			}
		}
	}

	// The life of an incident (stage, publish, claim, delete) leaves the
	// trail as it was; new events follow the old ones.
	m := manifest("audit-w0", 1)
	e := newKeyGen(230).entries(5, m)
	Load(t, s, "audit-w0", m, e, 5)
	Publish(t, s, "audit-w0", 1, 0)
	Load(t, s, "audit-w0", m, e, 5)
	Publish(t, s, "audit-w0", 2, 1)
	if err := s.ClaimPin(ctx, "audit-w0", e[0].Key, nil, PinAt(2, e[0].Record, "n"), store.IdemKey{}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVersion(ctx, "audit-w0", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, auditEvent(99, "audit-w0")); err != nil {
		t.Fatal(err)
	}
	after := listAudit(t, s, "", 0, 0)
	if len(after) != len(before)+1 || after[len(before)].Seq != uint64(len(before)+1) {
		t.Fatalf("after more activity: %d events, last %+v", len(after), after[len(after)-1])
	}
	for i := range before {
		if !sameAudit(before[i], after[i]) {
			t.Fatalf("event %d changed: %+v, was %+v", i+1, after[i], before[i])
		}
	}
}
