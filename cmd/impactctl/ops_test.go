package main

// Tests of the retention, audit and account-closure commands against a real
// impactd (internal/server on the embedded store, dev keys), in process.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// impactd is an in-process server (impacttest) and what the CLI needs to
// reach it.
type impactd struct {
	*impacttest.Env
	addr  string // the ops gRPC listener
	token string // ops-alice, impact.admin and impact.notify
}

func startImpactd(t *testing.T, opts impacttest.Options) *impactd {
	t.Helper()
	e := impacttest.Start(t, opts)
	return &impactd{Env: e, addr: e.Addrs.AdminGRPC, token: e.Token(t, "ops-alice", auth.ScopeAdmin, auth.ScopeNotify)}
}

// run runs impactctl against the server and returns its exit status,
// stdout and stderr.
func (d *impactd) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"IMPACT_ADDR": d.addr, "IMPACT_TOKEN": d.token}
	code = newApp(&out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok }).run(context.Background(), args)
	return code, out.String(), errOut.String()
}

// ctl runs impactctl against the server; a failure status fails the test
// unless the command is expected to fail (wantCode != 0).
func (d *impactd) ctl(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	code, stdout, stderr := d.run(t, args...)
	if code != wantCode {
		t.Fatalf("impactctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	return stdout + stderr
}

// demoFiles writes the demo spec and a small roster (n subjects).
func demoFiles(t *testing.T, dir string, n int) (spec, roster string) {
	t.Helper()
	spec, roster = filepath.Join(dir, "spec.yaml"), filepath.Join(dir, "roster.csv")
	if err := os.WriteFile(spec, testclient.DemoSpec(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(roster, testclient.DemoRoster(t, demo.RosterOptions{N: n, Seed: 1}), 0o600); err != nil {
		t.Fatal(err)
	}
	return spec, roster
}

// publishDemo uploads the demo spec with a roster of n subjects and
// publishes it as v1 of the demo incident; it returns the files.
func (d *impactd) publishDemo(t *testing.T, n int) (spec, roster string) {
	t.Helper()
	spec, roster = demoFiles(t, t.TempDir(), n)
	d.ctl(t, 0, "snapshot", "upload", "--incident", demo.IncidentID, "--spec", spec, "--roster", roster)
	d.ctl(t, 0, "snapshot", "publish", "--incident", demo.IncidentID, "--version", "1")
	return spec, roster
}

func TestSnapshotGC(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	spec, roster := demoFiles(t, t.TempDir(), 200)
	inc := demo.IncidentID
	for v := 1; v <= 4; v++ {
		d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)
	}
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1")
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "2")
	// The notifier pins a subject at v2.
	d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", demo.AffectedSubject)
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "3")

	out := d.ctl(t, 0, "snapshot", "gc", "--incident", inc, "--keep", "1")
	if want := "mmh-2025-12: removed v1; kept v2, v3, v4\n"; out != want {
		t.Errorf("gc output %q, want %q", out, want)
	}
	list := d.ctl(t, 0, "snapshot", "list", "--incident", inc)
	if strings.Contains(list, "\n1 ") || !strings.Contains(list, "2") {
		t.Errorf("list after gc:\n%s", list)
	}
	out = d.ctl(t, 0, "--json", "snapshot", "gc", "--incident", inc)
	var js struct {
		Removed []uint32 `json:"removed"`
		Kept    []uint32 `json:"kept"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Removed) != 0 || !slices.Equal(js.Kept, []uint32{2, 3, 4}) {
		t.Errorf("gc --json: %s (%v)", out, err)
	}
	out = d.ctl(t, 1, "snapshot", "gc", "--incident", "no-such-incident")
	if !strings.Contains(out, "NOT_FOUND") {
		t.Errorf("gc of an unknown incident: %s", out)
	}
}

func TestAudit(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	spec, roster := demoFiles(t, t.TempDir(), 100)
	inc := demo.IncidentID
	if out := d.ctl(t, 0, "audit"); out != "no audit events\n" {
		t.Errorf("empty trail: %q", out)
	}
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1")
	d.ctl(t, 1, "snapshot", "publish", "--incident", inc, "--version", "1", "--expect", "0")

	out := d.ctl(t, 0, "audit", "--incident", inc)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("audit table:\n%s", out)
	}
	for i, want := range [][]string{
		{"1 ", "ops-alice", "upload", inc, "v1", "ok", "staged: 100 entries"},
		{"2 ", "ops-alice", "publish", "v1", "ok", "visible v0 -> v1"},
		{"3 ", "ops-alice", "publish", "v1", "conflict", "expected visible v0"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("audit row %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
	// --limit keeps the newest.
	out = d.ctl(t, 0, "audit", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "3 ") {
		t.Errorf("audit --limit 1:\n%s", out)
	}
	var js struct {
		Events []struct {
			Seq    string `json:"seq"`
			Action string `json:"action"`
		} `json:"events"`
	}
	out = d.ctl(t, 0, "--json", "audit", "--after", "1")
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Events) != 2 || js.Events[0].Seq != "2" {
		t.Errorf("audit --json --after 1: %s (%v)", out, err)
	}
	if out := d.ctl(t, 2, "audit", "--limit", "-1"); !strings.Contains(out, "--limit must not be negative") {
		t.Errorf("negative limit: %s", out)
	}
}

func TestSubjectErase(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	spec, roster := d.publishDemo(t, 100)
	inc := demo.IncidentID
	d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", demo.AffectedSubject)

	out := d.ctl(t, 0, "subject", "erase", "--subject", demo.AffectedSubject)
	if want := "account closed: 1 notification pins removed; later snapshots drop the subject\n"; out != want {
		t.Errorf("erase: %q, want %q", out, want)
	}
	out = d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", demo.AffectedSubject)
	if !strings.Contains(strings.ToLower(out), "none") {
		t.Errorf("claim after erasure:\n%s", out)
	}
	out = d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)
	if !strings.Contains(out, "99 entries") {
		t.Errorf("upload after erasure (the erased row dropped):\n%s", out)
	}
	out = d.ctl(t, 0, "--json", "subject", "erase", "--subject", demo.AffectedSubject)
	var js struct {
		PinsRemoved int `json:"pins_removed"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.PinsRemoved != 0 {
		t.Errorf("second erase --json: %s (%v)", out, err)
	}
	if out := d.ctl(t, 0, "audit", "--limit", "3"); strings.Contains(out, demo.AffectedSubject) || strings.Count(out, "erase") != 2 {
		t.Errorf("audit after erasures:\n%s", out)
	}
	d.ctl(t, 2, "subject", "erase")
}
