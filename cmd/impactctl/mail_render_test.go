package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gomail "github.com/emersion/go-message/mail"
)

// testWave writes a wave file of n notices (subjects p-1..p-n, notice ids
// v2-N0001...) in the format notice claim --out writes, and returns its
// path and the lines.
func testWave(t *testing.T, dir string, n int) (string, []outboxLine) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	var lines []outboxLine
	for i := 1; i <= n; i++ {
		l := outboxLine{
			SubjectID: fmt.Sprintf("p-%d", i), IncidentID: "mmh-2025-12", Version: 2,
			NoticeID: fmt.Sprintf("v2-N%04d", i), Status: "AFFECTED", Cohorts: []string{"northland"},
			Subject:        "Your health information was affected — what it means",
			Body:           fmt.Sprintf("Kia ora,\n\nSome of your health information was taken.\n\nWhat you can do:\n- be careful with calls\n- we never ask for passwords\n\nReference: notice v2-N%04d, snapshot version 2.", i),
			SupportContact: "0800 000 011", NotifiedAt: "2026-01-12T09:30:00.123456Z",
		}
		if err := enc.Encode(l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	path := filepath.Join(dir, "wave.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, lines
}

// testRecipients writes a subject_id,email CSV for subjects p-1..p-n,
// leaving out those in skip.
func testRecipients(t *testing.T, dir string, n int, skip ...int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("email,subject_id,name\n")
	for i := 1; i <= n; i++ {
		if containsInt(skip, i) {
			continue
		}
		fmt.Fprintf(&b, "patient%d@example.org,p-%d,x\n", i, i)
	}
	path := filepath.Join(dir, "recipients.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestNoticeRenderWritesOneMessagePerNotice(t *testing.T) {
	dir := t.TempDir()
	wave, lines := testWave(t, dir, 5)
	rcpt := testRecipients(t, dir, 5, 3)
	out := filepath.Join(dir, "eml")
	code, stdout, stderr := ctl(t, "", "notice", "render", "--wave", wave, "--out", out,
		"--from", "Breach Notices <notices@health.example>", "--reply-to", "help@health.example", "--recipients", rcpt)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "rendered 5 messages") || !strings.Contains(stdout, "4 with a To: address, 1 whose subject has none") {
		t.Errorf("summary:\n%s", stdout)
	}
	entries, err := os.ReadDir(out)
	if err != nil || len(entries) != 5 {
		t.Fatalf("%d files (%v), want 5", len(entries), err)
	}
	for i, l := range lines {
		path := filepath.Join(out, l.NoticeID+".eml")
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", path, st.Mode().Perm())
		}
		raw, _ := os.ReadFile(path)
		m, err := netmail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		wantTo := fmt.Sprintf("patient%d@example.org", i+1)
		if i+1 == 3 {
			wantTo = ""
		}
		if got := m.Header.Get("To"); !strings.Contains(got, wantTo) || (wantTo == "") != (got == "") {
			t.Errorf("%s: To = %q, want %q", l.NoticeID, got, wantTo)
		}
		if got := m.Header.Get("Message-Id"); got != "<notice-"+l.NoticeID+"@health.example>" {
			t.Errorf("Message-Id = %q", got)
		}
		subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if err != nil || subj != l.Subject {
			t.Errorf("Subject = %q (%v)", subj, err)
		}
		r, err := gomail.CreateReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		parts := 0
		for {
			p, err := r.NextPart()
			if err != nil {
				break
			}
			parts++
			var body bytes.Buffer
			body.ReadFrom(p.Body)
			for _, w := range []string{"Some of your health information was taken.", "Notice " + l.NoticeID + ", snapshot version 2."} {
				if !strings.Contains(body.String(), w) {
					t.Errorf("%s part %d lacks %q", l.NoticeID, parts, w)
				}
			}
		}
		if parts != 2 {
			t.Errorf("%s: %d parts, want 2", l.NoticeID, parts)
		}
	}
	// Without --recipients: no To at all.
	out2 := filepath.Join(dir, "eml2")
	if code, _, stderr := ctl(t, "", "--json", "notice", "render", "--wave", wave, "--out", out2, "--from", "notices@health.example"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	raw, _ := os.ReadFile(filepath.Join(out2, lines[0].NoticeID+".eml"))
	if bytes.Contains(raw, []byte("\nTo:")) || bytes.HasPrefix(raw, []byte("To:")) {
		t.Error("a To: header without --recipients")
	}
}

func TestNoticeRenderRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	wave, _ := testWave(t, dir, 3)
	good, _ := os.ReadFile(wave)
	ls := strings.SplitAfter(string(good), "\n")
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(ls[0]+ls[1]+"{not json\n"+ls[2]), 0o600)
	dupe := filepath.Join(dir, "dupe.jsonl")
	os.WriteFile(dupe, []byte(ls[0]+ls[1]+ls[0]), 0o600)
	noTime := filepath.Join(dir, "notime.jsonl")
	os.WriteFile(noTime, []byte(strings.Replace(string(good), `"notified_at":"2026-01-12T09:30:00.123456Z"`, `"notified_at":""`, 1)), 0o600)
	badRcpt := filepath.Join(dir, "rcpt.csv")
	os.WriteFile(badRcpt, []byte("subject_id,email\np-1,a@example.org\np-2,not-an-address\n"), 0o600)
	dupRcpt := filepath.Join(dir, "rcpt2.csv")
	os.WriteFile(dupRcpt, []byte("subject_id,email\np-1,a@example.org\np-1,b@example.org\n"), 0o600)

	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--wave", bad, "--from", "n@health.example"}, 1, "bad.jsonl line 3: not an outbox line"},
		{[]string{"--wave", dupe, "--from", "n@health.example"}, 1, "dupe.jsonl line 3: the notice id of line 1 again"},
		{[]string{"--wave", noTime, "--from", "n@health.example"}, 1, "line 1: notified_at is not a time"},
		{[]string{"--wave", wave, "--from", "n@health.example", "--recipients", badRcpt}, 1, "rcpt.csv: row 3: email is not an email address"},
		{[]string{"--wave", wave, "--from", "n@health.example", "--recipients", dupRcpt}, 1, "row 3: the subject_id of row 2 again"},
		{[]string{"--wave", wave}, 2, `"from" not set`},
		{[]string{"--wave", wave, "--from", "nobody"}, 2, "--from: not an email address"},
	}
	for _, tt := range tests {
		out := filepath.Join(dir, "out-"+fmt.Sprint(len(tt.args)))
		os.RemoveAll(out)
		code, _, stderr := ctl(t, "", append([]string{"notice", "render", "--out", out}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tt.args, code, stderr, tt.code, tt.want)
		}
		if strings.Contains(stderr, "example.org") || strings.Contains(stderr, "not-an-address") {
			t.Errorf("%v: stderr quotes a value: %q", tt.args, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: wrote %s before refusing", tt.args, out)
		}
	}
}
