package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func TestPracticeCommands(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	dir := t.TempDir()
	spec := impacttest.WriteFile(t, dir, "spec.yaml", func() []byte {
		var b strings.Builder
		if err := demo.WriteSpec(&b); err != nil {
			t.Fatal(err)
		}
		return []byte(b.String())
	}())
	roster := impacttest.WriteFile(t, dir, "roster.csv", []byte("subject_id,status,cohorts,practice_id\n"+
		"a1,affected,northland,PR001\na2,affected,northland,PR001\na3,under_review,,PR001\n"+
		"b1,affected,referrals,PR002\nc1,affected,uploads,\n"))
	inc := demo.IncidentID
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1")
	d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", "a1")
	d.ctl(t, 0, "notice", "claim", "--incident", inc, "--subject", "b1")

	out := d.ctl(t, 0, "practice", "stats", "--incident", inc)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "PRACTICE") || strings.Fields(lines[2])[0] != "PR001" ||
		strings.Join(strings.Fields(lines[2]), " ") != "PR001 2 1 1 2 0" || strings.Join(strings.Fields(lines[3]), " ") != "PR002 1 0 1 0 0" {
		t.Fatalf("practice stats:\n%s", out)
	}
	out = d.ctl(t, 0, "practice", "stats", "--incident", inc, "--sort", "notified", "--json")
	var js struct {
		Practices []struct {
			PracticeID string `json:"practice_id"`
			Due        int    `json:"due"`
		} `json:"practices"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || len(js.Practices) != 2 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	out = d.ctl(t, 0, "practice", "stats", "--incident", inc, "--sort", "due")
	if l := strings.Split(out, "\n"); !strings.HasPrefix(l[2], "PR001") {
		t.Fatalf("sorted by due:\n%s", out)
	}
	d.ctl(t, 2, "practice", "stats", "--incident", inc, "--sort", "name")
	out = d.ctl(t, 0, "practice", "list", "--incident", inc)
	if !strings.Contains(out, "PR001") || !strings.Contains(out, "PR002") {
		t.Fatalf("practice list:\n%s", out)
	}
	// Needs impact.admin.
	d.token = d.Token(t, "notifier", auth.ScopeNotify)
	if out := d.ctl(t, 1, "practice", "list", "--incident", inc); !strings.Contains(strings.ToLower(out), "permission") {
		t.Fatalf("notify token: %s", out)
	}

	// dev token --practice mints a token the practice API accepts; its
	// call then shows in impactctl audit, without ids.
	var tokOut strings.Builder
	if code := newApp(&tokOut, &tokOut, func(k string) (string, bool) {
		if k == "IMPACT_DATA_DIR" {
			return d.Dir, true
		}
		return "", false
	}).run(context.Background(), []string{"dev", "token", "--sub", "dr-who", "--practice", "PR001"}); code != 0 {
		t.Fatalf("dev token --practice: %d %s", code, tokOut.String())
	}
	conn, err := grpc.NewClient(d.Addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(tokOut.String()))
	chk, err := impactv1.NewPracticeServiceClient(conn).CheckPatients(ctx, &impactv1.CheckPatientsRequest{IncidentId: inc, SubjectIds: []string{"a1", "b1", "zz"}})
	if err != nil || len(chk.GetCheck().GetPatients()) != 1 || chk.GetCheck().GetPatients()[0].GetSubjectId() != "a1" {
		t.Fatalf("check with the dev practice token: %v, %v", chk, err)
	}
	d.token = d.Token(t, "ops", auth.ScopeAdmin)
	out = d.ctl(t, 0, "audit", "--incident", inc)
	if !strings.Contains(out, "practice_check") || !strings.Contains(out, "practice PR001: 3 ids checked, 1 found") || strings.Contains(out, "a1,") {
		t.Fatalf("audit:\n%s", out)
	}
}
