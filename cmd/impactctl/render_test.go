package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func TestErrorLine(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		err  error
		want string
	}{
		{"grpc code", "publish", status.Error(codes.FailedPrecondition, "version 3 is not staged"),
			"impactctl: publish: version 3 is not staged (FAILED_PRECONDITION)"},
		{"wrapped grpc", "publish", fmt.Errorf("read the visible version: %w", status.Error(codes.NotFound, "unknown incident")),
			"impactctl: publish: read the visible version: unknown incident (NOT_FOUND)"},
		{"multi-line message", "upload", status.Error(codes.InvalidArgument, "roster rejected:\n  row 3: status\n\n  row 4: cohorts\n"),
			"impactctl: upload: roster rejected:; row 3: status; row 4: cohorts (INVALID_ARGUMENT)"},
		{"dial failure", "list", status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:9091: connect: connection refused"`),
			"impactctl: list: cannot reach impactd: dial tcp 127.0.0.1:9091: connect: connection refused (UNAVAILABLE)"},
		{"client certificate refused", "list", status.Error(codes.Unavailable, `connection error: desc = "error reading server preface: remote error: tls: certificate required"`),
			"impactctl: list: connection error: desc = \"error reading server preface: remote error: tls: certificate required\"; if impactd uses TLS or mutual TLS, check --ca-file, --cert and --key (UNAVAILABLE)"},
		{"wrapped after the status: impactd stopped mid-wave", "claim",
			fmt.Errorf("%w; 12 claimed notices kept in w.jsonl.tmp, re-run the same command to finish the wave",
				status.Error(codes.Unavailable, "error reading from server: read tcp 127.0.0.1:5->127.0.0.1:9091: read: connection reset by peer")),
			"impactctl: claim: error reading from server: read tcp 127.0.0.1:5->127.0.0.1:9091: read: connection reset by peer (UNAVAILABLE); 12 claimed notices kept in w.jsonl.tmp, re-run the same command to finish the wave"},
		{"publish whose outcome is open", "publish",
			correctionsRefused(status.Error(codes.Unavailable, "store unavailable: redis: i/o timeout"), "mmh-2025-12", 2, 1, "re-run"),
			"impactctl: publish: store unavailable: redis: i/o timeout (UNAVAILABLE); the publish may have been made: see 'impactctl snapshot list --incident mmh-2025-12' and run it again only if the visible version did not move"},
		{"unauthenticated hint", "stats", status.Error(codes.Unauthenticated, "unauthenticated"),
			"impactctl: stats: unauthenticated; check --token or IMPACT_TOKEN; with impactd --dev, mint it with the same --data-dir/IMPACT_DATA_DIR as impactd (UNAUTHENTICATED)"},
		{"empty message", "diff", status.Error(codes.Internal, ""), "impactctl: diff: INTERNAL"},
		{"plain error", "claim", errors.New("open x.csv: no such file or directory"), "impactctl: claim: open x.csv: no such file or directory"},
		{"no command", "", errors.New("unknown command \"x\""), `impactctl: unknown command "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorLine(tt.cmd, tt.err)
			if got != tt.want {
				t.Errorf("errorLine = %q\nwant         %q", got, tt.want)
			}
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("not one line: %q", got)
			}
		})
	}
}

func TestViolations(t *testing.T) {
	st := status.New(codes.InvalidArgument, "roster rejected: 3 errors")
	st, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "row 12: status", Description: "must be affected or under_review"},
		{Field: "row 1407: cohorts", Description: "unknown cohort"},
		{Field: "cohorts[2].id", Description: "duplicate cohort id"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := violations(st.Err())
	want := "" +
		"ROW   FIELD          RULE\n" +
		"12    status         must be affected or under_review\n" +
		"1407  cohorts        unknown cohort\n" +
		"-     cohorts[2].id  duplicate cohort id\n"
	if got != want {
		t.Errorf("violations:\n%s\nwant:\n%s", got, want)
	}
	if v := violations(status.Error(codes.InvalidArgument, "no details")); v != "" {
		t.Errorf("no details: %q", v)
	}
	if v := violations(status.Error(codes.Internal, "x")); v != "" {
		t.Errorf("other code: %q", v)
	}
}

func TestNumPercentBar(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := num(n); got != want {
			t.Errorf("num(%d) = %q, want %q", n, got, want)
		}
	}
	bars := []struct {
		part, whole uint32
		bar         string
		pct         int
	}{
		{0, 0, "░░░░░░░░░░", 0},
		{0, 10, "░░░░░░░░░░", 0},
		{1, 1000, "█░░░░░░░░░", 0}, // some progress never shows as none
		{765, 1234, "██████░░░░", 61},
		{999, 1000, "█████████░", 99}, // not all never shows as all
		{1000, 1000, "██████████", 100},
		{1200, 1000, "██████████", 120},
	}
	for _, b := range bars {
		if got := bar(b.part, b.whole, 10); got != b.bar {
			t.Errorf("bar(%d, %d) = %q, want %q", b.part, b.whole, got, b.bar)
		}
		if got := percent(b.part, b.whole); got != b.pct {
			t.Errorf("percent(%d, %d) = %d, want %d", b.part, b.whole, got, b.pct)
		}
	}
}

// columns splits a rendered table line into its cells.
func columns(line string) []string {
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
}

func TestRenderStats(t *testing.T) {
	var b strings.Builder
	err := renderStats(&b, &impactv1.GetNoticeStatsResponse{
		IncidentId: "mmh-2025-12", VisibleVersion: 3,
		Cohorts: []*impactv1.CohortNoticeStats{
			{CohortId: "northland", Title: "Northland", Members: 1234, Notified: 765, Due: 469},
			{CohortId: "uploads", Title: "Uploads", Members: 0},
		},
		Affected: 9700, UnderReview: 300, Notified: 6200, Due: 3800, CorrectionsDue: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "mmh-2025-12 at visible version v3") {
		t.Errorf("heading: %q", lines[0])
	}
	got := map[string]string{}
	for _, l := range lines {
		if c := columns(l); len(c) > 1 {
			got[c[0]] = strings.Join(c, "|")
		}
	}
	for name, want := range map[string]string{
		"northland": "northland|██████░░░░|61% of 1,234 notified, 469 due|Northland",
		"uploads":   "uploads|░░░░░░░░░░|0% of 0 notified, 0 due|Uploads",
		"all":       "all|██████░░░░|62% of 10,000 notified, 3,800 due|9,700 affected, 300 under review",
	} {
		if got[name] != want {
			t.Errorf("%s row = %q, want %q\n%s", name, got[name], want, out)
		}
	}
	if !strings.Contains(out, "\ncorrections due (notified, now not affected): 4\n") {
		t.Errorf("corrections missing:\n%s", out)
	}
}

func TestRenderDiff(t *testing.T) {
	var b strings.Builder
	err := renderDiff(&b, &impactv1.DiffSnapshotsResponse{
		IncidentId: "mmh-2025-12", Version: 2, Against: 1, Added: 1200, Removed: 1, Changed: 2, SpecChanged: true,
		Cohorts: []*impactv1.CohortDiff{{CohortId: "uploads", Added: 1200, Members: 1200}, {CohortId: "northland", Removed: 1, Members: 1540}},
		Transitions: []*impactv1.StatusTransition{
			{From: impactv1.Status_NOT_AFFECTED, To: impactv1.Status_AFFECTED, Count: 1200},
			{From: impactv1.Status_AFFECTED, To: impactv1.Status_NOT_AFFECTED, Count: 1},
			{From: impactv1.Status_AFFECTED, To: impactv1.Status_UNDER_REVIEW, Count: 1},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		if c := columns(l); len(c) > 1 {
			rows[c[0]+"|"+c[1]] = c
		}
	}
	for key, want := range map[string][]string{
		"added|1,200":                  {"added", "1,200"},
		"removed (now not affected)|1": {"removed (now not affected)", "1"},
		"changed|2":                    {"changed", "2", "1 another status, 1 the same status in other cohorts"},
		"same status|other cohorts":    {"same status", "other cohorts", "1"},
		"COHORT|JOINED":                {"COHORT", "JOINED", "LEFT", "MEMBERS AT v2"},
		"uploads|+1,200":               {"uploads", "+1,200", "-0", "1,200"},
		"northland|+0":                 {"northland", "+0", "-1", "1,540"},
		"affected|not affected":        {"affected", "not affected", "1"},
		"not affected|affected":        {"not affected", "affected", "1,200"},
		"affected|under review":        {"affected", "under review", "1"},
	} {
		if got := rows[key]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("row %s = %q, want %q\n%s", key, got, want, b.String())
		}
	}
	if !strings.Contains(b.String(), "v2 against v1, spec changed") {
		t.Errorf("heading missing:\n%s", b.String())
	}
}

func TestRenderSnapshotList(t *testing.T) {
	var b strings.Builder
	ts := timestamppb.New(mustTime(t, "2025-12-19T09:30:00Z"))
	err := renderSnapshotList(&b, "mmh-2025-12", &impactv1.ListSnapshotsResponse{
		VisibleVersion: 2,
		Snapshots: []*impactv1.SnapshotInfo{
			{Version: 3, State: impactv1.SnapshotState_STAGED, Entries: 10001, Affected: 9700, UnderReview: 301,
				Digest: "3f2a9c1b7d4e0011223344556677", CreatedBy: "ops", CreatedAt: ts, Source: "upload"},
			{Version: 2, State: impactv1.SnapshotState_PUBLISHED, Visible: true, Entries: 10000, Affected: 9700,
				UnderReview: 300, Digest: "aa", CreatedBy: "ops", CreatedAt: ts, Source: "rollback of v1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if lines[0] != "mmh-2025-12: visible version v2" || len(lines) != 4 {
		t.Fatalf("unexpected output:\n%s", b.String())
	}
	header := columns(lines[1])
	if strings.Join(header, "|") != "VERSION|STATE|VISIBLE|ENTRIES|AFFECTED|UNDER REVIEW|DIGEST|CREATED BY|CREATED AT|SOURCE" {
		t.Errorf("header = %q", header)
	}
	// Columns line up: every cell starts where its header does.
	start := func(line, cell string, from int) int { return from + strings.Index(line[from:], cell) }
	if s, h := start(lines[2], "3f2a9c1b7d4e ", 0), strings.Index(lines[1], "DIGEST"); s != h {
		t.Errorf("digest column at %d, header at %d:\n%s", s, h, b.String())
	}
	if s, h := start(lines[3], "*", 0), strings.Index(lines[1], "VISIBLE"); s != h {
		t.Errorf("visible marker at %d, header at %d:\n%s", s, h, b.String())
	}
	if got := strings.Join(columns(lines[2]), "|"); got != "v3|staged|10,001|9,700|301|3f2a9c1b7d4e|ops|2025-12-19T09:30:00Z|upload" {
		t.Errorf("v3 row = %q", got)
	}
	if got := strings.Join(columns(lines[3]), "|"); got != "v2|published|*|10,000|9,700|300|aa|ops|2025-12-19T09:30:00Z|rollback of v1" {
		t.Errorf("v2 row = %q", got)
	}
}
