package loadgen

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/demo"
)

func TestDriveCountsRequestsAndErrors(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	r := Drive(context.Background(), "test", Load{Concurrency: 4, Duration: 200 * time.Millisecond}, nil,
		func(ctx context.Context, w int, _ *rand.Rand) error {
			if w < 0 || w >= 4 {
				t.Errorf("worker %d out of range", w)
			}
			if _, ok := ctx.Deadline(); !ok {
				t.Error("request without a deadline")
			}
			if calls.Add(1)%10 == 0 {
				return boom
			}
			time.Sleep(time.Millisecond)
			return nil
		})
	if r.Requests == 0 || int64(r.Requests) > calls.Load() {
		t.Fatalf("requests %d, calls %d", r.Requests, calls.Load())
	}
	if r.Errors == 0 || !errors.Is(r.FirstErr, boom) || r.Errors > r.Requests/5 {
		t.Fatalf("errors %d of %d, first %v", r.Errors, r.Requests, r.FirstErr)
	}
	if r.P50 > r.P99 || r.P99 > r.Max || r.RPS() <= 0 {
		t.Fatalf("percentiles %v %v %v, rps %v", r.P50, r.P99, r.Max, r.RPS())
	}
}

func TestDriveStopsOnStop(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	var calls atomic.Int64
	r := Drive(context.Background(), "test", Load{Concurrency: 3, Duration: time.Hour}, stop,
		func(context.Context, int, *rand.Rand) error { calls.Add(1); return nil })
	if calls.Load() != 0 || r.Requests != 0 {
		t.Fatalf("%d calls after stop", calls.Load())
	}
}

func TestSampleSubjects(t *testing.T) {
	var buf bytes.Buffer
	if _, err := demo.WriteRoster(&buf, demo.RosterOptions{N: 5000, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	inRoster := map[string]bool{}
	for _, line := range strings.Split(buf.String(), "\n")[1:] {
		if id, _, ok := strings.Cut(line, ","); ok {
			inRoster[id] = true
		}
	}
	got := sampleSubjects(buf.Bytes(), 300, 1)
	seen := map[string]bool{}
	for _, id := range got {
		if !inRoster[id] || seen[id] {
			t.Fatalf("sample %q: not in the roster or repeated", id)
		}
		seen[id] = true
	}
	if len(got) != 300 {
		t.Fatalf("%d sampled, want 300", len(got))
	}
	if again := sampleSubjects(buf.Bytes(), 300, 1); strings.Join(again, ",") != strings.Join(got, ",") {
		t.Fatal("same seed, different sample")
	}
	if all := sampleSubjects(buf.Bytes(), 9000, 1); len(all) != 5000 {
		t.Fatalf("asking for more than the roster: %d", len(all))
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--rows", "1000"}, &bytes.Buffer{})
	if err != nil || c.PublishRows != 1000 || c.Concurrency != 50 || c.Tokens != 10000 {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, args := range [][]string{{"--rows", "1"}, {"--c", "0"}, {"--duration", "0s"}, {"--affected-percent", "101"}, {"extra"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestMergeCombinesSlices(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	var a, b Result
	a.setLatencies(ms(5, 1, 3))
	a.Elapsed, a.Errors, a.CPU = time.Second, 1, cpuShare{server: 1}
	b.setLatencies(ms(2, 4, 100))
	b.Elapsed, a.FirstErr, b.CPU = 3*time.Second, errors.New("x"), cpuShare{server: 0.5}
	m := merge("m", []Result{a, b})
	if m.Requests != 6 || m.Errors != 1 || m.Elapsed != 4*time.Second || m.FirstErr == nil {
		t.Fatalf("%+v", m)
	}
	if m.P50 != 4*time.Millisecond || m.Max != 100*time.Millisecond || m.RPS() != 1.5 {
		t.Fatalf("p50 %v max %v rps %v", m.P50, m.Max, m.RPS())
	}
	if m.CPU.server != 0.625 { // (1*1 + 0.5*3) / 4
		t.Fatalf("cpu %v", m.CPU.server)
	}
}
