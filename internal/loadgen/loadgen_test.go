package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
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
	if err != nil || c.PublishRows != 1000 || c.Concurrency != 50 || c.Tokens != 10000 || c.Claims != 250 || c.Replicas != 3 {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, args := range [][]string{{"--rows", "1"}, {"--c", "0"}, {"--duration", "0s"}, {"--affected-percent", "101"}, {"extra"},
		{"--claims", "-1"}, {"--replicas", "0"}, {"--claim-window", "0"}, {"--claim-read-rate", "-1"}} {
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

func TestParseMallocs(t *testing.T) {
	text := "# HELP go_memstats_mallocs_total Total number of heap objects allocated.\n" +
		"# TYPE go_memstats_mallocs_total counter\ngo_memstats_mallocs_total_other 5\ngo_memstats_mallocs_total 1.234567e+06\n"
	n, err := parseMallocs(bufio.NewScanner(strings.NewReader(text)))
	if err != nil || n != 1234567 {
		t.Fatalf("%d, %v", n, err)
	}
	if _, err := parseMallocs(bufio.NewScanner(strings.NewReader("go_memstats_mallocs_total_other 5\n"))); err == nil {
		t.Fatal("no counter: no error")
	}
	if _, err := parseMallocs(bufio.NewScanner(strings.NewReader("go_memstats_mallocs_total x\n"))); err == nil {
		t.Fatal("bad value: no error")
	}
	m := &mallocCounter{scrape: 10}
	if got := m.between(100, 1000); got != 890 {
		t.Fatalf("between: %d", got)
	}
	if got := m.between(100, 105); got != 0 {
		t.Fatalf("between, less than a scrape: %d", got)
	}
	if processMallocs() == 0 {
		t.Fatal("this process has allocated nothing?")
	}
}

func TestParseProcStatus(t *testing.T) {
	m, err := parseProcStatus([]byte("Name:\timpactd\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n"))
	if err != nil || m.RSS != 100<<20 || m.HWM != 200<<20 {
		t.Fatalf("%+v, %v", m, err)
	}
	for _, bad := range []string{"VmRSS:\t1 kB\n", "VmRSS:\t1 MB\nVmHWM:\t1 kB\n", "VmRSS:\tx kB\nVmHWM:\t1 kB\n"} {
		if _, err := parseProcStatus([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	own, err := procMem(os.Getpid())
	if err != nil || own.RSS == 0 || own.HWM < own.RSS {
		t.Fatalf("own memory %+v, %v", own, err)
	}
}

func TestClaimWavesAreDisjointRosterSubjects(t *testing.T) {
	var buf bytes.Buffer
	if _, err := demo.WriteRoster(&buf, demo.RosterOptions{N: 3000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	taken := sampleSubjects(buf.Bytes(), 100, 1)
	waves := claimWaves(buf.Bytes(), taken, 400)
	if len(waves) != 2 || len(waves[0]) != 400 || len(waves[1]) != 400 {
		t.Fatalf("waves of %d and %d", len(waves[0]), len(waves[1]))
	}
	seen := map[string]bool{}
	for _, s := range taken {
		seen[s] = true
	}
	for _, w := range waves {
		for _, s := range w {
			if seen[s] || !strings.HasPrefix(s, "patient-") {
				t.Fatalf("%q repeated or not a roster subject", s)
			}
			seen[s] = true
		}
	}
}

func TestWithoutPlacing(t *testing.T) {
	got := withoutPlacing([]string{"--dev", "--data-dir", "/tmp/x", "--store", "redis", "--redis-url=redis://127.0.0.1:1/0",
		"--grpc-addr", "127.0.0.1:2", "--rate-ip", "off", "--upload-dir", "/u"})
	if strings.Join(got, " ") != "--dev --store redis --rate-ip off" {
		t.Fatalf("%q", got)
	}
}
