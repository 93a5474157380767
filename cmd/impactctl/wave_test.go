package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

const waveRoster = "subject_id,status,cohorts,practice_id\n" +
	"p-1,affected,northland,GP-NL-001\n" +
	"p-2,under_review,referrals,GP-RF-001\n" +
	"p-3,affected,northland;uploads,GP-NL-002\n" +
	"p-4,affected, uploads ;referrals ,\n" +
	"p-5,affected,northlandish,\n"

func walkAll(t *testing.T, roster, cohort string) ([]string, error) {
	t.Helper()
	var got []string
	err := rosterWalker{cohort: cohort}.walk(strings.NewReader(roster), func(s string) error {
		got = append(got, s)
		return nil
	})
	return got, err
}

func TestRosterWalkerFilters(t *testing.T) {
	tests := []struct {
		roster, cohort string
		want           []string
	}{
		{waveRoster, "", []string{"p-1", "p-2", "p-3", "p-4", "p-5"}},
		{waveRoster, "northland", []string{"p-1", "p-3"}}, // not "northlandish"
		{waveRoster, "uploads", []string{"p-3", "p-4"}},   // spaces around ids ignored
		{waveRoster, "referrals", []string{"p-2", "p-4"}},
		{waveRoster, "nobody", nil},
		// Only subject_id (and cohorts with --cohort) are needed, in any order.
		{"subject_id\np-9\n p-8 \n", "", []string{"p-9", "p-8"}},
		{"cohorts,extra,subject_id\nuploads,x,p-7\nnorthland,y,p-6\n", "uploads", []string{"p-7"}},
		// A byte order mark before the header is ignored.
		{"\ufeffsubject_id,cohorts\np-1,uploads\n", "uploads", []string{"p-1"}},
	}
	for _, tt := range tests {
		got, err := walkAll(t, tt.roster, tt.cohort)
		if err != nil {
			t.Errorf("%q/%s: %v", tt.roster, tt.cohort, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q/%s = %v, want %v", tt.roster, tt.cohort, got, tt.want)
		}
	}
}

func TestRosterWalkerErrors(t *testing.T) {
	tests := []struct {
		roster, cohort, want string
	}{
		{"", "", "empty file"},
		{"status,cohorts\naffected,x\n", "", "row 1: header has no subject_id column"},
		{"subject_id,status\np-1,affected\n", "uploads", "row 1: header has no cohorts column"},
		{"subject_id,cohorts\np-1,uploads\n ,uploads\n", "", "row 3: subject_id is empty"},
		{"subject_id,cohorts\nsecret-id,uploads,extra\n", "", "wrong number of fields"},
	}
	for _, tt := range tests {
		_, err := walkAll(t, tt.roster, tt.cohort)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.roster, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "secret-id") || strings.Contains(err.Error(), "p-1") {
			t.Errorf("error echoes a subject id: %v", err)
		}
	}
}

func TestWaveIDDeterministic(t *testing.T) {
	rows, id, err := scanWave(strings.NewReader(waveRoster), "northland")
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Errorf("rows = %d, want 2", rows)
	}
	sum := sha256.Sum256([]byte(waveRoster + "northland"))
	if want := "wave-" + hex.EncodeToString(sum[:])[:12]; id != want {
		t.Errorf("wave id = %s, want %s", id, want)
	}
	_, again, _ := scanWave(strings.NewReader(waveRoster), "northland")
	_, otherCohort, _ := scanWave(strings.NewReader(waveRoster), "uploads")
	_, otherRoster, _ := scanWave(strings.NewReader(waveRoster+"p-6,affected,northland,\n"), "northland")
	_, allCohorts, _ := scanWave(strings.NewReader(waveRoster), "")
	if again != id {
		t.Errorf("same roster and cohort: %s then %s", id, again)
	}
	ids := []string{id, otherCohort, otherRoster, allCohorts}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 4 {
		t.Errorf("wave ids collide: %v", ids)
	}
	if got := idempotencyKey(id, "p-1"); got != id+":p-1" {
		t.Errorf("idempotency key = %q", got)
	}
}

func sendClaim(subject string, version uint32) *impactv1.Claim {
	return &impactv1.Claim{
		Action: impactv1.ClaimAction_SEND, IncidentId: "mmh-2025-12", Version: version,
		Status:     impactv1.Status_AFFECTED,
		Cohorts:    []*impactv1.Cohort{{Id: "northland", Title: "N"}, {Id: "uploads"}},
		Notice:     &impactv1.Notice{Subject: "Your <information>", Body: "Kia ora,\n\nline 2 & more\n", SupportContact: "0800 000 011"},
		NoticeId:   "n-" + subject,
		NotifiedAt: timestamppb.New(time.Date(2025, 12, 19, 9, 30, 0, 5000, time.UTC)),
	}
}

func readLines(t *testing.T, path string) []outboxLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []outboxLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l outboxLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %d is not an outbox JSON object: %v", len(out)+1, err)
		}
		out = append(out, l)
	}
	return out
}

func TestOutboxCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wave.jsonl")
	if err := os.WriteFile(path, []byte("previous wave\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	box, err := createOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"p-1", "p-3"} {
		if err := box.add(s, sendClaim(s, 2)); err != nil {
			t.Fatal(err)
		}
	}
	// Until committed, readers of the path see the previous file whole.
	if b, _ := os.ReadFile(path); string(b) != "previous wave\n" {
		t.Errorf("outbox visible before commit: %q", b)
	}
	if err := box.commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("outbox mode %v, want 0600 (it holds personal data)", fi.Mode().Perm())
	}
	lines := readLines(t, path)
	want := outboxLine{
		SubjectID: "p-1", IncidentID: "mmh-2025-12", Version: 2, NoticeID: "n-p-1", Status: "AFFECTED",
		Cohorts: []string{"northland", "uploads"}, Subject: "Your <information>", Body: "Kia ora,\n\nline 2 & more\n",
		SupportContact: "0800 000 011", NotifiedAt: "2025-12-19T09:30:00.000005Z",
	}
	if len(lines) != 2 || !equalLine(lines[0], want) || lines[1].SubjectID != "p-3" {
		t.Errorf("outbox = %+v\nwant first %+v", lines, want)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), `\u003c`) {
		t.Error("notice text is HTML-escaped in the outbox")
	}
}

func equalLine(a, b outboxLine) bool { return reflect.DeepEqual(a, b) }

func (l outboxLine) key() string { return l.SubjectID + "@" + l.NoticeID }

func TestOutboxKeep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wave.jsonl")
	box, err := createOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := box.add("p-1", sendClaim("p-1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := box.keep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a failed wave must not appear at the outbox path: %v", err)
	}
	if lines := readLines(t, path+".tmp"); len(lines) != 1 || lines[0].key() != "p-1@n-p-1" {
		t.Errorf("kept lines = %+v", lines)
	}
}
