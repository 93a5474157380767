package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/testutil/testbin"
)

// The whole harness at a tiny size: every phase runs and reports what it
// measured, every request is answered, the Redis baseline reads the keys
// impactd reads, and the claim waves claim every subject once.
func TestHarnessTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and three impactd processes")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not installed")
		}
		t.Skip("redis-server not installed")
	}
	bin := t.TempDir()
	if err := testbin.Build(bin, false, "github.com/impact-health/impact/cmd/impactd"); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{
		"--impactd", filepath.Join(bin, "impactd"), "--work-dir", t.TempDir(),
		"--rows", "4000", "--tokens", "200", "--affected-percent", "20", "--c", "4", "--conns", "1",
		"--duration", "300ms", "--warmup", "100ms", "--rounds", "1", "--paced-percent", "0", "--ghz", "off",
		"--claims", "100", "--replicas", "3", "--claim-read-rate", "200", "--impactd-log-level", "warn", "--json",
		// 200 subjects at a few thousand req/s is far more per subject than
		// the default limit lets through: a limit that fits the tiny run.
		"--impactd-flag=--rate-subject=1000/s:2000",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out, logs bytes.Buffer
	h := &harness{cfg: cfg, out: &out, logw: &logs}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = h.run(ctx)
	h.close()
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}

	if len(r.Targets) != 5 {
		t.Fatalf("%d targets, want 5", len(r.Targets))
	}
	for _, tg := range r.Targets {
		if tg.Requests == 0 || tg.Errors != 0 || tg.RPS <= 0 || tg.AllocsPerReq == nil {
			t.Errorf("%s: %d requests, %d errors (%s), %.0f req/s, allocs %v", tg.Name, tg.Requests, tg.Errors, tg.FirstError, tg.RPS, tg.AllocsPerReq)
		}
		if tg.Ratio <= 0 {
			t.Errorf("%s: ratio %v", tg.Name, tg.Ratio)
		}
	}
	if imp := r.Targets[2]; !strings.Contains(imp.Name, "impactd gRPC") || imp.AllocsPerReq == nil || *imp.AllocsPerReq < 1 {
		t.Errorf("impactd gRPC row %+v: a read allocates", imp)
	}
	if len(r.Ratios) != 3 || r.Ratios[1].Value <= 0 {
		t.Errorf("ratios %+v", r.Ratios)
	}
	if len(r.ImpactdFlags) == 0 || !strings.Contains(strings.Join(r.ImpactdFlags, " "), "--store redis") {
		t.Errorf("impactd flags %q", r.ImpactdFlags)
	}
	for _, f := range r.ImpactdFlags {
		if strings.Contains(f, "127.0.0.1") {
			t.Errorf("impactd flags show an address: %q", r.ImpactdFlags)
		}
	}

	if r.RSS == nil || r.RSS.IdleMB <= 0 || r.RSS.LoadPeakMB < r.RSS.LoadedMB || r.RSS.PublishPeak <= 0 {
		t.Errorf("RSS %+v", r.RSS)
	}
	if len(r.Publish) != 1 || r.Publish[0].Errors != 0 || r.Publish[0].DuringRPS <= 0 || r.Publish[0].RSSPeakMB < r.Publish[0].RSSBeforeMB {
		t.Errorf("publish %+v", r.Publish)
	}

	c := r.Claims
	if c == nil || len(c.Waves) != 2 {
		t.Fatalf("claims %+v", c)
	}
	for i, w := range c.Waves {
		if w.Replicas != []int{1, 3}[i] || w.Answered != 100 || w.Errors != 0 || w.ClaimsPerSec <= 0 || w.P99ms < w.P50ms {
			t.Errorf("wave %d: %+v", i, w)
		}
		if w.ReadRPS <= 0 || w.ReadErrors != 0 {
			t.Errorf("wave %d reads: %+v", i, w)
		}
	}
	if c.Ratio <= 0 {
		t.Errorf("claim wall ratio %v", c.Ratio)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"minimal grpc-go + one Redis pipeline", "allocs/req", "impactd RSS", "claim wave, 3 replicas / 1", "load average"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}
