package pace

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestYieldIdleDoesNotPause(t *testing.T) {
	p := New(Config{})
	for range 100 {
		if err := p.Yield(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s.Yields != 100 || s.Pauses != 0 || s.Paused != 0 {
		t.Fatalf("idle: %+v, want 100 yields and no pause", s)
	}
}

func TestYieldPausesWhileReadsInFlight(t *testing.T) {
	p := New(Config{PerRead: time.Millisecond, MaxPause: 3 * time.Millisecond, Poll: time.Millisecond})
	p.Enter()
	p.Enter()
	if got := p.InFlight(); got != 2 {
		t.Fatalf("in flight %d, want 2", got)
	}
	if err := p.Yield(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Two reads at 1 ms each: the pause is 2 ms of the 3 allowed (a timer
	// never fires early, so only the lower bound is checked).
	if s := p.Stats(); s.Yields != 1 || s.Pauses != 1 || s.Paused < 2*time.Millisecond {
		t.Fatalf("stats %+v, want one paused yield of >= 2ms", s)
	}
	p.Exit()
	p.Exit()
	if err := p.Yield(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Pauses != 1 {
		t.Fatalf("after the reads ended: %+v, want no new pause", s)
	}
}

// The progress floor: under reads that never end, every Yield still
// returns, after MaxPause, so a loop always moves on.
func TestYieldProgressFloor(t *testing.T) {
	p := New(Config{PerRead: time.Hour, MaxPause: 2 * time.Millisecond, Poll: time.Millisecond})
	for range 1000 {
		p.Enter() // 1000 reads in flight, none ends
	}
	done := make(chan error, 1)
	go func() {
		for range 5 {
			if err := p.Yield(context.Background()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a hang, not a measurement
		t.Fatal("Yield did not return under sustained reads")
	}
	if s := p.Stats(); s.Pauses != 5 {
		t.Fatalf("stats %+v, want 5 pauses", s)
	}
}

// A pause ends as soon as the last read does, well before its length.
func TestYieldReturnsWhenReadsEnd(t *testing.T) {
	p := New(Config{PerRead: time.Hour, MaxPause: time.Hour, Poll: time.Millisecond})
	p.Enter()
	done := make(chan error, 1)
	go func() { done <- p.Yield(context.Background()) }()
	for p.Stats().Pauses == 0 {
		time.Sleep(time.Millisecond)
	}
	p.Exit()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Yield kept pausing after the last read ended")
	}
}

func TestYieldContext(t *testing.T) {
	p := New(Config{PerRead: time.Hour, MaxPause: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Yield(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("idle, cancelled: %v", err)
	}
	p.Enter()
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Yield(ctx) }()
	for p.Stats().Pauses == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled during a pause: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Yield ignored its context")
	}
}

func TestNilPacer(t *testing.T) {
	var p *Pacer
	p.Enter()
	p.Exit()
	if err := p.Yield(context.Background()); err != nil || p.InFlight() != 0 || p.Stats() != (Stats{}) {
		t.Fatal("a nil Pacer must count nothing and never pause")
	}
}

func TestEnterExitConcurrent(t *testing.T) {
	p := New(Config{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				p.Enter()
				p.Exit()
			}
		})
	}
	wg.Wait()
	if n := p.InFlight(); n != 0 {
		t.Fatalf("in flight %d after balanced Enter/Exit, want 0", n)
	}
}

// BenchmarkEnterExit is the cost a read pays: go test -bench . ./internal/pace
func BenchmarkEnterExit(b *testing.B) {
	p := New(Config{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Enter()
			p.Exit()
		}
	})
}

// BenchmarkYieldIdle is the cost of a Yield on an idle server.
func BenchmarkYieldIdle(b *testing.B) {
	p := New(Config{})
	ctx := context.Background()
	for b.Loop() {
		_ = p.Yield(ctx)
	}
}
