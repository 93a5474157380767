package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/testutil/redisserver"
	"github.com/impact-health/impact/internal/testutil/testbin"
)

// bins are impactd and impactctl, built once for the test binary (without
// the race detector: the harness itself runs under it, and the children
// then fit the short run's bounds on two cores).
var bins Binaries

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(testbin.Run(m, "chaos", false, func(dir string) {
		bins = Binaries{Impactd: filepath.Join(dir, "impactd"), Impactctl: filepath.Join(dir, "impactctl")}
	}, "github.com/impact-health/impact/cmd/impactd", "github.com/impact-health/impact/cmd/impactctl"))
}

// TestScenarios runs every scenario of `make chaos` with the short bounds
// and fails on any violation the checker finds, any acknowledged pin lost
// (outside failover), or a scenario that could not run.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("starts impactd and redis-server processes")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		redisserver.SkipOrFail(t, fmt.Errorf("%w: %v", redisserver.ErrNotInstalled, err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			r := RunScenario(ctx, s, Options{Dir: t.TempDir(), Bins: bins, Bounds: ShortBounds()})
			if r.Err != nil {
				t.Fatalf("%s: %v", s.Name, r.Err)
			}
			t.Log(r.Line())
			for _, v := range r.Violations {
				t.Error(v)
			}
			if (r.Faults == 0 && !s.NoFault) || r.Claims == 0 || r.Reads == 0 {
				t.Errorf("the run injected %d faults, acknowledged %d claims and answered %d reads; want each > 0", r.Faults, r.Claims, r.Reads)
			}
		})
	}
}

// TestHarnessSeesLostPins runs the Redis scenario with a fault that
// deletes the ledger's keys: the harness must say so (lost pins, ledger
// violations) rather than pass. It is the end-to-end test of the harness
// itself.
func TestHarnessSeesLostPins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts impactd and redis-server processes")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		redisserver.SkipOrFail(t, fmt.Errorf("%w: %v", redisserver.ErrNotInstalled, err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := Scenario{Name: "redis-forgets-pins", Run: func(ctx context.Context, e *Env, b Bounds) (Figures, error) {
		return redisKillWith(ctx, e, b, true)
	}}
	r := RunScenario(ctx, s, Options{Dir: t.TempDir(), Bins: bins, Bounds: ShortBounds()})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	t.Log(r.Line())
	rules := map[string]int{}
	for _, v := range r.Violations {
		rules[v.Rule]++
	}
	// Claimers re-pin forgotten subjects at once, so how many the sweep
	// still finds lost varies; the history shows every one of them.
	if rules["ledger"] == 0 || rules["lost-pin"] != r.Lost {
		t.Fatalf("a ledger that forgot its pins: %d lost, violations by rule %v; want ledger violations", r.Lost, rules)
	}
}
