package main

// notice verify against impactd on a real redis-server, with pins lost the
// way a failover loses them: deleted from Redis behind impactd's back.

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// startOnRedis runs impactd (in process) on a fresh redis-server.
func startOnRedis(t *testing.T) (*impactd, *redisserver.Server) {
	t.Helper()
	srv := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	e := impacttest.Start(t, impacttest.Options{RedisURL: "redis://" + srv.Addr() + "/0"})
	e.WaitReady(t)
	return &impactd{Env: e, addr: e.Addrs.AdminGRPC, token: e.Token(t, "ops-alice", auth.ScopeAdmin, auth.ScopeNotify)}, srv
}

// dropPins deletes the pins (and their claims' idempotency records) of the
// given subjects straight from Redis: acknowledged writes lost.
func dropPins(t *testing.T, d *impactd, srv *redisserver.Server, subjects []string) {
	t.Helper()
	ctx := context.Background()
	c := srv.Client(t)
	keys := map[string]bool{}
	for _, s := range subjects {
		k := d.Keyer.SubjectKey(s)
		keys[string(k[:])] = true
	}
	dropped := 0
	iter := c.Scan(ctx, 0, "impact:{p:"+demo.IncidentID+":*", 1000).Iterator()
	for iter.Next(ctx) {
		h := iter.Val()
		fields, err := c.HKeys(ctx, h).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields {
			if keys[f] || (len(f) > 16 && keys[f[len(f)-16:]]) {
				if err := c.HDel(ctx, h, f).Err(); err != nil {
					t.Fatal(err)
				}
				if keys[f] {
					dropped++
				}
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if dropped != len(subjects) {
		t.Fatalf("dropped %d pins, want %d", dropped, len(subjects))
	}
}

// waveSubjects returns the subject id of every line of a wave file.
func waveSubjects(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l outboxLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l.SubjectID)
	}
	return out
}

func TestNoticeVerify(t *testing.T) {
	d, srv := startOnRedis(t)
	_, roster := d.publishDemo(t, 200)
	wave := filepath.Join(t.TempDir(), "wave.jsonl")
	d.ctl(t, 0, "notice", "claim", "--incident", demo.IncidentID, "--roster", roster, "--out", wave)
	subjects := waveSubjects(t, wave)
	if len(subjects) < 10 {
		t.Fatalf("wave of %d notices", len(subjects))
	}

	out := d.ctl(t, 0, "notice", "verify", "--incident", demo.IncidentID, "--file", wave)
	if !strings.Contains(out, "missing   0 ") || strings.Contains(out, "FILE") {
		t.Fatalf("verify of an intact ledger:\n%s", out)
	}

	// Lines 2, 5 and 9 lose their pins.
	dropPins(t, d, srv, []string{subjects[1], subjects[4], subjects[8]})
	code, stdout, stderr := d.run(t, "notice", "verify", "--incident", demo.IncidentID, "--file", wave)
	if code != exitError {
		t.Fatalf("verify with lost pins: exit %d\n%s%s", code, stdout, stderr)
	}
	var listed []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, wave) {
			f := strings.Fields(l)
			listed = append(listed, f[1]+" "+f[3])
		}
	}
	if got := strings.Join(listed, ","); got != "2 missing,5 missing,9 missing" {
		t.Errorf("listed %q, want lines 2, 5 and 9 missing\n%s", got, stdout)
	}
	if want := "run 'impactctl notice restore --file " + wave + "'"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not say %q", stderr, want)
	}
	for _, s := range subjects {
		if strings.Contains(stdout+stderr, s) {
			t.Fatal("verify printed a subject id")
		}
	}
	code, stdout, _ = d.run(t, "--json", "notice", "verify", "--incident", demo.IncidentID, "--file", wave)
	var js struct {
		OK       uint32 `json:"ok"`
		Missing  uint32 `json:"missing"`
		Problems []struct {
			Line    int    `json:"line"`
			Problem string `json:"problem"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &js); err != nil || code != exitError || js.Missing != 3 || int(js.OK) != len(subjects)-3 || len(js.Problems) != 3 || js.Problems[2].Line != 9 {
		t.Errorf("verify --json: exit %d, %s (%v)", code, stdout, err)
	}

	out = d.ctl(t, 0, "notice", "restore", "--file", wave)
	if !strings.Contains(out, "restored     3 ") {
		t.Errorf("restore:\n%s", out)
	}
	out = d.ctl(t, 0, "notice", "verify", "--incident", demo.IncidentID, "--file", wave)
	if !strings.Contains(out, "missing   0 ") || strings.Contains(out, "FILE") {
		t.Errorf("verify after restore:\n%s", out)
	}
	d.ctl(t, 1, "notice", "verify", "--incident", "another-incident", "--file", wave)
}
