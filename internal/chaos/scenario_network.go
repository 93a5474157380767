package chaos

import (
	"context"
	"fmt"
	"time"
)

// redisNetwork: impactd reaches Redis through the harness's proxy, which
// adds 50-500 ms to every chunk in each direction, then resets every
// connection again and again, then heals. Every answer must be right or
// UNAVAILABLE (never NOT_AFFECTED for an affected subject, never another
// error), acknowledged pins stay, and impactd answers again after the
// heal without a restart.
func redisNetwork(ctx context.Context, e *Env, b Bounds) (Figures, error) {
	var f Figures
	_, px, err := e.StartProxiedRedis()
	if err != nil {
		return f, err
	}
	l, err := startLoaded(ctx, e, b, b.Fillers, Load{Readers: b.Readers, Claimers: b.Claimers, Pause: b.Pause}, RedisFlags(px.Addr()), "A")
	if err != nil {
		return f, err
	}
	w, a := l.w, l.replicas[0]
	for i := 0; i < b.Faults; i++ {
		if err := sleep(ctx, b.Phase); err != nil {
			return f, err
		}
		cut := w.Rec.Now()
		px.SetLatency(50*time.Millisecond, 500*time.Millisecond)
		f.Faults++
		if err := sleep(ctx, 2*b.Phase); err != nil {
			return f, err
		}
		for r := 0; r < 4; r++ {
			px.ResetAll()
			f.Faults++
			if err := sleep(ctx, b.Phase/4); err != nil {
				return f, err
			}
		}
		px.SetLatency(0, 0)
		px.ResetAll() // connections opened under latency may still hold delayed chunks
		healed := time.Now()
		if _, err := w.WaitRecovered(ctx, a, recoverTimeout); err != nil {
			return f, err
		}
		f.Recovery = max(f.Recovery, time.Since(healed))
		if _, err := lostPins(ctx, w, a, &f, cut, false); err != nil {
			return f, err
		}
	}
	if err := l.finish(ctx, e, b, &f); err != nil {
		return f, err
	}
	// Every answer comes within impactd's request deadline, UNAVAILABLE
	// at the latest when it ends; the slack is the client's and the
	// server's scheduling on a loaded CI machine, below what a store client
	// holding a read past the deadline added (a retry after a reset waiting
	// for a connection another read opens: 0.5-0.7 s measured).
	slack := e.RequestTimeout / 4
	var slowest time.Duration
	unavailable := 0
	for _, op := range w.Rec.History() {
		if op.Kind == KindRead {
			slowest = max(slowest, op.Return-op.Call)
			if op.Outcome != OK {
				unavailable++
			}
			if op.Return-op.Call > e.RequestTimeout+slack {
				f.Violations = append(f.Violations, Violation{Rule: "deadline",
					Detail: fmt.Sprintf("a read took %s, past impactd's %s deadline (slack %s)", ms3(op.Return-op.Call), e.RequestTimeout, slack),
					Ops:    []Op{op}})
			}
		}
	}
	f.Note = fmt.Sprintf("%d reads UNAVAILABLE; slowest read %s (impactd's deadline %s); no restart",
		unavailable, slowest.Round(time.Millisecond), e.RequestTimeout)
	return f, nil
}

// replicasRace: two impactd replicas on one Redis; two publishers stage
// and publish through different replicas, racing each other's
// compare-and-set, while notifiers claim and patients read through both.
// Zero contradictions: every read after a claim answers from its pin, the
// visible version only moves forward, every answer from one version.
func replicasRace(ctx context.Context, e *Env, b Bounds) (Figures, error) {
	var f Figures
	srv, err := e.StartRedis()
	if err != nil {
		return f, err
	}
	l, err := startLoaded(ctx, e, b, b.Fillers/10, Load{Readers: b.Readers, Claimers: b.Claimers, Pause: b.Pause}, RedisFlags(srv.Addr()), "A", "B")
	if err != nil {
		return f, err
	}
	w, a, replicas := l.w, l.replicas[0], l.replicas
	end := time.Now().Add(time.Duration(b.Faults+1) * 2 * b.Phase)
	type tally struct{ ok, refused int }
	results := make(chan tally, 2)
	for p, d := range replicas {
		go func() {
			var t tally
			for time.Now().Before(end) && ctx.Err() == nil {
				v, err := w.Stage(ctx, d)
				if err != nil {
					break
				}
				switch w.PublishAs(ctx, clientPublisher+p, d, v).Outcome {
				case OK:
					t.ok++
				case Failed:
					t.refused++
				}
			}
			results <- t
		}()
	}
	var total tally
	for range replicas {
		t := <-results
		total.ok += t.ok
		total.refused += t.refused
	}
	if total.ok == 0 {
		return f, fmt.Errorf("no publish succeeded")
	}
	l.stop()
	if _, err := lostPins(ctx, w, a, &f, w.Rec.Now(), false); err != nil {
		return f, err
	}
	w.check(e, &f)
	f.Note = fmt.Sprintf("%d publishes flipped, %d refused by compare-and-set; no fault injected", total.ok, total.refused)
	return f, nil
}
