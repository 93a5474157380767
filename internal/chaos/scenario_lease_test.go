package chaos

import (
	"testing"
	"time"
)

// TestLeaseFigures: the lease scenario's own rules, on a hand-made
// history around two freezes of replica B (one of 3 s, one of 300 ms) with
// a 1 s lease.
func TestLeaseFigures(t *testing.T) {
	freezes := []freeze{{start: 1000 * time.Millisecond, thaw: 4000 * time.Millisecond, long: true},
		{start: 5000 * time.Millisecond, thaw: 5300 * time.Millisecond}}
	onB := func(op Op) Op { op.Replica = "B"; return op }
	claimA := func(call, ret int, o Outcome) Op {
		op := claim(clientClaimers, call, ret, "ALREADY_SENT", 1, "AFFECTED", "n1")
		if op.Outcome = o; o != OK {
			op.Code = "Unavailable"
		}
		return op
	}
	good := []Op{
		claimA(500, 600, OK),               // before the freeze: not counted
		claimA(1100, 1950, OK),             // waits for B's entry to expire
		claimA(2000, 2001, OK),             // after it: at once
		claimA(5100, 5310, OK),             // waits for the thaw
		onB(read(1, 1100, 1250, 1, 0, "")), // from memory, within the lease
		onB(read(1, 2500, 4100, 1, 0, "")), // from Redis after the thaw
		onB(failedRead(1, 2000, 4000, "Unavailable", 0)),
		func() Op { op := read(1, 3000, 3001, 1, 0, ""); op.Replica = "C"; return op }(), // not B's
	}
	var f Figures
	s := leaseFigures(good, freezes, "B", time.Second, &f)
	if len(f.Violations) > 0 {
		t.Fatalf("violations in a good history: %v", f.Violations)
	}
	if len(s.longWaits) != 2 || pct(s.longWaits, 100) != 850*time.Millisecond || len(s.shortWaits) != 1 || s.shortWaits[0] != 210*time.Millisecond {
		t.Errorf("claim waits: long %v, short %v", s.longWaits, s.shortWaits)
	}
	if s.memory != 250*time.Millisecond || s.reads != 3 || s.unavailable != 1 {
		t.Errorf("memory %s, reads on B %d, unavailable %d; want 250ms, 3, 1", s.memory, s.reads, s.unavailable)
	}

	bad := []struct {
		name string
		op   Op
		rule string
	}{
		{"claim failed during a freeze", claimA(1200, 3200, Unknown), "claim-failed"},
		{"answer from memory past the lease", onB(read(1, 2000, 2010, 1, 0, "")), "lease"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			var f Figures
			leaseFigures(append(append([]Op(nil), good...), tc.op), freezes, "B", time.Second, &f)
			if len(f.Violations) != 1 || f.Violations[0].Rule != tc.rule {
				t.Fatalf("want one %s violation, got %v", tc.rule, f.Violations)
			}
		})
	}
}
