package chaos

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// leaseReplica is the replica lease the lease scenario passes impactd
// (--replica-lease; the default is 2 s): short, to keep the scenario short.
// The margin is impactd's, a tenth of it.
const leaseReplica = time.Second

// freeze is one partition of replica B from Redis, on the recorder's clock:
// from just after the proxy froze to just before it thawed.
type freeze struct {
	start, thaw time.Duration
	long        bool // longer than the lease
}

// replicaLease: three impactd replicas answer patients from memory under
// replica leases (--replica-lease 1s); B reaches Redis through a proxy, A
// and C directly. Claims run through A, reads through all three. B's proxy
// is frozen again and again (bytes held, connections open: a partition TCP
// does not notice), for longer than the lease plus impactd's request
// deadline, and for a third of the lease, then thawed; a new version is
// staged and published through A at the start of each freeze, so that
// claims are due while B is cut off.
//
// Besides the history checks (no read that starts after a claim's or a
// publish's acknowledgement, on any replica, misses it; B's old answers
// during the freeze are allowed only while those writes are in flight),
// B never answers a read called a lease or more after a freeze began while
// the freeze lasts (it must have stopped answering from memory), and every
// claim and publish issued through A during a freeze completes: it waits
// for B's acknowledgement or B's entry to expire on Redis's clock (at most
// about a lease), it does not fail.
func replicaLease(ctx context.Context, e *Env, b Bounds) (Figures, error) {
	var f Figures
	srv, px, err := e.StartProxiedRedis()
	if err != nil {
		return f, err
	}
	lease := []string{"--replica-lease", leaseReplica.String()}
	direct := append(RedisFlags(srv.Addr()), lease...)
	l, err := startReplicas(ctx, e, b, b.Fillers/10, Load{Readers: b.Readers, Claimers: b.Claimers, Pause: b.Pause, ClaimOn: []string{"A"}},
		replicaSpec{"A", direct}, replicaSpec{"B", append(RedisFlags(px.Addr()), lease...)}, replicaSpec{"C", direct})
	if err != nil {
		return f, err
	}
	w, a, rb := l.w, l.replicas[0], l.replicas[1]
	// Long enough for B to answer from memory (under a lease), then from
	// Redis until impactd's request deadline (UNAVAILABLE), then again.
	long := leaseReplica + e.RequestTimeout + leaseReplica/2
	var freezes []freeze
	published := 0
	for i := 0; i < b.Faults; i++ {
		for _, d := range []time.Duration{long, leaseReplica / 3} {
			if err := sleep(ctx, b.Phase); err != nil {
				return f, err
			}
			px.Freeze()
			fr := freeze{start: w.Rec.Now(), long: d > leaseReplica}
			f.Faults++
			// A new version through A: its commit and its publish wait for B
			// like the claims do, and claims are due again while B is cut off.
			staged := make(chan error, 1)
			go func() { _, err := w.StageAndPublish(ctx, a); staged <- err }()
			if err := sleep(ctx, d); err != nil {
				return f, err
			}
			fr.thaw = w.Rec.Now()
			px.Thaw()
			freezes = append(freezes, fr)
			if err := <-staged; err != nil {
				f.Violations = append(f.Violations, Violation{Rule: "write-failed",
					Detail: fmt.Sprintf("a version staged and published through A during B's %s freeze: %v", d, err)})
			} else {
				published++
			}
			thawed := time.Now()
			if _, err := w.WaitRecovered(ctx, rb, recoverTimeout); err != nil {
				return f, err
			}
			f.Recovery = max(f.Recovery, time.Since(thawed))
		}
		// Every pin acknowledged so far is on B once it serves again.
		if _, err := lostPins(ctx, w, rb, &f, w.Rec.Now(), false); err != nil {
			return f, err
		}
	}
	if err := l.finish(ctx, e, b, &f); err != nil {
		return f, err
	}
	stats := leaseFigures(w.Rec.History(), freezes, rb.Name, leaseReplica, &f)
	f.Note = fmt.Sprintf("%s; %d of %d versions staged and published during freezes", stats, published, len(freezes))
	return f, nil
}

// leaseStats are the lease scenario's figures.
type leaseStats struct {
	lease time.Duration
	// Claims issued through A during long and short freezes, and how long
	// they took.
	longWaits, shortWaits []time.Duration
	// memory is the longest time from a long freeze's start to the return
	// of an answer B gave before the thaw (from memory: Redis was cut off).
	memory time.Duration
	// reads on B, and those that failed (UNAVAILABLE, DEADLINE_EXCEEDED).
	reads, unavailable int
}

func (s leaseStats) String() string {
	return fmt.Sprintf("--replica-lease %s; claims during freezes > lease waited p50 %s max %s (%d), during freezes < lease p50 %s max %s (%d); "+
		"B answered from memory up to %s into a freeze; %d of %d reads on B UNAVAILABLE",
		s.lease, ms3(pct(s.longWaits, 50)), ms3(pct(s.longWaits, 100)), len(s.longWaits),
		ms3(pct(s.shortWaits, 50)), ms3(pct(s.shortWaits, 100)), len(s.shortWaits),
		ms3(s.memory), s.unavailable, s.reads)
}

func ms3(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// leaseFigures measures h against the freezes of replica b and records
// the rules broken: a claim issued during a freeze that did not complete,
// and an answer from b, before the thaw, to a read called a lease or more
// after the freeze began (b's lease, renewed at the latest just before the
// freeze, had run out: that answer came from memory it may no longer use).
func leaseFigures(h []Op, freezes []freeze, b string, lease time.Duration, f *Figures) leaseStats {
	s := leaseStats{lease: lease}
	during := func(t time.Duration) (freeze, bool) {
		for _, fr := range freezes {
			if t >= fr.start && t < fr.thaw {
				return fr, true
			}
		}
		return freeze{}, false
	}
	for _, op := range h {
		switch {
		case op.Kind == KindClaim && op.Client >= clientClaimers && op.Client < clientPublisher:
			fr, ok := during(op.Call)
			if !ok {
				continue
			}
			if op.Outcome != OK {
				f.Violations = append(f.Violations, Violation{Rule: "claim-failed",
					Detail: fmt.Sprintf("a claim through %s during B's freeze failed (%s) instead of waiting for B's lease", op.Replica, op.Code), Ops: []Op{op}})
				continue
			}
			if fr.long {
				s.longWaits = append(s.longWaits, op.Return-op.Call)
			} else {
				s.shortWaits = append(s.shortWaits, op.Return-op.Call)
			}
		case op.Kind == KindRead && op.Replica == b:
			s.reads++
			if op.Outcome != OK {
				s.unavailable++
				continue
			}
			fr, ok := during(op.Return)
			if !ok {
				continue
			}
			if fr.long {
				s.memory = max(s.memory, op.Return-fr.start)
			}
			if op.Call-fr.start >= lease {
				f.Violations = append(f.Violations, Violation{Rule: "lease",
					Detail: fmt.Sprintf("%s answered from memory a read called %s into its partition (before the thaw): past its lease (%s)",
						b, ms3(op.Call-fr.start), lease), Ops: []Op{op}})
			}
		}
	}
	return s
}

// pct is the p-th percentile of ds (0 when empty; 100 is the maximum).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p)/100)]
}
