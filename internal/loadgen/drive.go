package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Request issues one request for worker w and reports whether it
// succeeded. rnd is the worker's own random source.
type Request func(ctx context.Context, w int, rnd *rand.Rand) error

// Load is how a target is driven: Concurrency workers, each issuing one
// request after the other (a closed loop), for Duration after Warmup (not
// measured). With Rate > 0 the workers together pace themselves to about
// Rate requests per second instead of going as fast as answers come.
type Load struct {
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	Rate        float64
	// CallTimeout bounds every request.
	CallTimeout time.Duration
}

// maxRequestsPerWorker bounds every worker's loop whatever the duration.
const maxRequestsPerWorker = 5_000_000

// Result is what one measurement saw.
type Result struct {
	Name     string
	Requests int           // measured requests, errors included
	Errors   int           // measured requests that failed
	Rejected int           // of which rate-limited (errRateLimited)
	FirstErr error         // the first failure, if any
	Elapsed  time.Duration // measured wall time
	P50, P99 time.Duration // latency percentiles of all measured requests
	Max      time.Duration
	CPU      cpuShare // cores used by the server, Redis and the generator (set by the harness)

	lat []time.Duration // every measured latency, sorted (for merge)
}

// RPS is the measured request rate.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Drive runs req under load until the duration is over, ctx is done or
// stop is closed (nil: never), whichever comes first.
func Drive(ctx context.Context, name string, l Load, stop <-chan struct{}, req Request) Result {
	if l.Concurrency <= 0 {
		l.Concurrency = 1
	}
	if l.CallTimeout <= 0 {
		l.CallTimeout = 5 * time.Second
	}
	start := time.Now()
	measureFrom := start.Add(l.Warmup)
	end := measureFrom.Add(l.Duration)
	var interval time.Duration
	if l.Rate > 0 {
		interval = time.Duration(float64(l.Concurrency) / l.Rate * float64(time.Second))
	}
	type workerResult struct {
		lat      []time.Duration
		errs     int
		rejected int
		firstErr error
	}
	results := make([]workerResult, l.Concurrency)
	var wg sync.WaitGroup
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w)+1, 0x6c6f6164))
			res := &results[w]
			res.lat = make([]time.Duration, 0, 1<<14)
			next := time.Now().Add(time.Duration(rnd.Int64N(int64(interval) + 1)))
			for i := 0; i < maxRequestsPerWorker; i++ {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil || closed(stop) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, l.CallTimeout)
				err := req(cctx, w, rnd)
				cancel()
				if t0.Before(measureFrom) {
					continue
				}
				res.lat = append(res.lat, time.Since(t0))
				if err != nil {
					if res.errs == 0 {
						res.firstErr = err
					}
					res.errs++
					if errors.Is(err, errRateLimited) {
						res.rejected++
					}
				}
			}
		}()
	}
	wg.Wait()
	stopped := time.Now()
	r := Result{Name: name, Elapsed: max(0, stopped.Sub(measureFrom))}
	var all []time.Duration
	for _, w := range results {
		all = append(all, w.lat...)
		r.Errors += w.errs
		r.Rejected += w.rejected
		if r.FirstErr == nil {
			r.FirstErr = w.firstErr
		}
	}
	r.setLatencies(all)
	return r
}

// setLatencies sorts lat and sets the counts and percentiles from it.
func (r *Result) setLatencies(lat []time.Duration) {
	slices.Sort(lat)
	r.lat, r.Requests = lat, len(lat)
	if len(lat) > 0 {
		r.P50 = lat[len(lat)*50/100]
		r.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		r.Max = lat[len(lat)-1]
	}
}

// merge combines measurements of one target taken in slices: requests,
// errors and time add up, percentiles are those of all latencies, CPU
// shares are time-weighted.
func merge(name string, rs []Result) Result {
	m := Result{Name: name}
	var all []time.Duration
	for _, r := range rs {
		all = append(all, r.lat...)
		m.Errors += r.Errors
		m.Rejected += r.Rejected
		if m.FirstErr == nil {
			m.FirstErr = r.FirstErr
		}
		m.Elapsed += r.Elapsed
		w := r.Elapsed.Seconds()
		m.CPU.server += r.CPU.server * w
		m.CPU.redis += r.CPU.redis * w
		m.CPU.generator += r.CPU.generator * w
	}
	if s := m.Elapsed.Seconds(); s > 0 {
		m.CPU.server /= s
		m.CPU.redis /= s
		m.CPU.generator /= s
	}
	m.setLatencies(all)
	return m
}

func closed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }
