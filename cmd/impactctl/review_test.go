package main

// Tests of the publish review commands (diff's contradiction report,
// publish --accept-corrections) against a real in-process impactd.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

// reviewRoster writes a roster CSV of rows under the header.
func reviewRoster(t *testing.T, dir, name string, rows ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	body := "subject_id,status,cohorts,practice_id\n" + strings.Join(rows, "\n") + "\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishReview(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	dir := t.TempDir()
	spec, _ := demoFiles(t, dir, 10)
	inc := demo.IncidentID
	v1 := reviewRoster(t, dir, "v1.csv", "alice,affected,northland,", "bob,affected,referrals,", "carol,under_review,,")
	v2 := reviewRoster(t, dir, "v2.csv", "bob,under_review,referrals,", "carol,under_review,,")
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", v1)
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1")
	for _, s := range []string{"alice", "bob", "carol"} {
		d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", s)
	}
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", v2)

	out := d.ctl(t, 0, "snapshot", "diff", "--incident", inc, "--version", "2", "--against", "1")
	first, _, _ := strings.Cut(out, "\n")
	if want := "2 patients already notified would get a correction: 1 affected -> not affected, 1 affected -> under review."; first != want {
		t.Errorf("diff starts with %q, want %q\n%s", first, want, out)
	}
	for _, want := range []string{"northland", "referrals", "--accept-corrections 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}

	// Without acceptance, and with too low an acceptance: refused, with the
	// number and the diff to review; nothing changes.
	for _, args := range [][]string{nil, {"--accept-corrections", "1"}} {
		out = d.ctl(t, 1, append([]string{"snapshot", "publish", "--incident", inc, "--version", "2"}, args...)...)
		for _, want := range []string{"2 already-notified patients would get a correction", "impactctl snapshot diff --incident " + inc + " --version 2 --against 1", "--accept-corrections 2"} {
			if !strings.Contains(out, want) {
				t.Errorf("refusal %v lacks %q: %s", args, want, out)
			}
		}
	}
	if list := d.ctl(t, 0, "--json", "snapshot", "list", "--incident", inc); !strings.Contains(strings.Join(strings.Fields(list), ""), `"visible_version":1,`) {
		t.Fatalf("a refused publish moved the visible version:\n%s", list)
	}
	out = d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "2", "--accept-corrections", "2")
	if !strings.Contains(out, "published "+inc+" v2") {
		t.Errorf("accepted publish: %s", out)
	}
	// The corrections go out; rolling back to v1 would then correct the
	// same two again.
	for _, s := range []string{"alice", "bob"} {
		d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", s)
	}
	out = d.ctl(t, 1, "snapshot", "rollback", "--incident", inc, "--to", "1")
	if !strings.Contains(out, "2 already-notified patients would get a correction") {
		t.Errorf("rollback refusal: %s", out)
	}
	d.ctl(t, 0, "snapshot", "rollback", "--incident", inc, "--to", "1", "--accept-corrections", "2")
}

// ctlAs runs impactctl with another token.
func (d *impactd) ctlAs(t *testing.T, token string, wantCode int, args ...string) string {
	t.Helper()
	saved := d.token
	d.token = token
	defer func() { d.token = saved }()
	return d.ctl(t, wantCode, args...)
}

func TestPublishApprovals(t *testing.T) {
	d := startImpactd(t, impacttest.Options{PublishApprovals: 2, ApprovalTTL: time.Hour})
	bob := d.Token(t, "ops-bob", auth.ScopeAdmin)
	notifier := d.Token(t, "notifier-1", auth.ScopeNotify)
	dir := t.TempDir()
	spec, _ := demoFiles(t, dir, 10)
	inc := demo.IncidentID
	v1 := reviewRoster(t, dir, "v1.csv", "alice,affected,northland,", "bob,affected,referrals,", "carol,affected,uploads,")
	v2 := reviewRoster(t, dir, "v2.csv", "bob,affected,referrals,")
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", v1)

	// The first publish is a request too; alice cannot approve it herself.
	out := d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1")
	if !strings.Contains(out, "requested by ops-alice: 1 more approval(s) needed") || !strings.Contains(out, "impactctl snapshot approve --incident "+inc+" --version 1") {
		t.Errorf("publish request output: %s", out)
	}
	out = d.ctl(t, 1, "snapshot", "approve", "--incident", inc, "--version", "1")
	if !strings.Contains(out, "another admin must approve it") || !strings.Contains(out, "FAILED_PRECONDITION") {
		t.Errorf("own approval: %s", out)
	}
	// A notifier can neither request nor approve.
	if out := d.ctlAs(t, notifier, 1, "snapshot", "approve", "--incident", inc, "--version", "1"); !strings.Contains(out, "PERMISSION_DENIED") {
		t.Errorf("notifier approval: %s", out)
	}
	if out := d.ctlAs(t, notifier, 1, "snapshot", "publish", "--incident", inc, "--version", "1", "--expect", "0"); !strings.Contains(out, "PERMISSION_DENIED") {
		t.Errorf("notifier publish: %s", out)
	}
	out = d.ctl(t, 0, "snapshot", "requests", "--incident", inc)
	if !strings.Contains(out, "v1") || !strings.Contains(out, "ops-alice") || !strings.Contains(out, "pending") {
		t.Errorf("requests:\n%s", out)
	}
	out = d.ctlAs(t, bob, 0, "snapshot", "approve", "--incident", inc, "--version", "1")
	if !strings.Contains(out, "approved and published "+inc+" v1") || !strings.Contains(out, "approved by ops-bob") {
		t.Errorf("approval: %s", out)
	}
	if out := d.ctl(t, 0, "snapshot", "requests", "--incident", inc); out != "no publish requests\n" {
		t.Errorf("requests after the publish: %q", out)
	}
	// Approving what is no longer pending: unknown.
	if out := d.ctlAs(t, bob, 1, "snapshot", "approve", "--incident", inc, "--version", "1"); !strings.Contains(out, "no pending publish request") {
		t.Errorf("approving a done request: %s", out)
	}

	// A correction: the request must accept it, and the approval counts again.
	d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", "alice")
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", v2)
	if out := d.ctl(t, 1, "snapshot", "publish", "--incident", inc, "--version", "2"); !strings.Contains(out, "1 already-notified patients would get a correction") {
		t.Errorf("request without acceptance: %s", out)
	}
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "2", "--accept-corrections", "1")
	if out := d.ctl(t, 1, "snapshot", "publish", "--incident", inc, "--version", "2", "--accept-corrections", "1"); !strings.Contains(out, "is pending") {
		t.Errorf("a second request for a pending version: %s", out)
	}
	// carol is notified meanwhile: the approval counts again, finds 2 > 1
	// and refuses; the request is removed.
	d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", "carol")
	out = d.ctlAs(t, bob, 1, "snapshot", "approve", "--incident", inc, "--version", "2")
	if !strings.Contains(out, "2 already-notified patients would get a correction, 1 accepted; review 'impactctl snapshot diff --incident "+inc+" --version 2 --against 1', then request the publish again with --accept-corrections 2") {
		t.Errorf("approval after another notice: %s", out)
	}
	if out := d.ctl(t, 0, "snapshot", "requests", "--incident", inc); out != "no publish requests\n" {
		t.Errorf("requests after a refused approval: %q", out)
	}
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "2", "--accept-corrections", "2")
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", v1) // v3
	out = d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "3")
	if !strings.Contains(out, "requested") {
		t.Errorf("request v3: %s", out)
	}
	// Publishing v3 (approved by bob) moves the visible version: v2's
	// request lapses and cannot be approved.
	d.ctlAs(t, bob, 0, "snapshot", "approve", "--incident", inc, "--version", "3")
	out = d.ctl(t, 0, "snapshot", "requests", "--incident", inc)
	if !strings.Contains(out, "lapsed") {
		t.Errorf("v2's request after v3 was published:\n%s", out)
	}
	out = d.ctlAs(t, bob, 1, "snapshot", "approve", "--incident", inc, "--version", "2")
	if !strings.Contains(out, "lapsed: the visible version moved from v1 to v3") {
		t.Errorf("approving a lapsed request: %s", out)
	}
	if out := d.ctl(t, 0, "snapshot", "requests", "--incident", inc); out != "no publish requests\n" {
		t.Errorf("a lapsed request is removed once refused: %q", out)
	}
	audit := d.ctl(t, 0, "audit", "--incident", inc)
	for _, want := range []string{"publish_request", "publish_approval", "publish_lapse", "publish_refused", "own_publish_request"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s:\n%s", want, audit)
		}
	}
}
