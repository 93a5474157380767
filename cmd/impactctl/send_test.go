package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"mime"
	"net"
	netmail "net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/impact-health/impact/internal/mail"
	"github.com/impact-health/impact/internal/mail/smtptest"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

// smtpTLS returns a server TLS config with a throw-away certificate for
// 127.0.0.1 and writes the CA that signed it to a PEM file.
func smtpTLS(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	ca := impacttest.NewCA(t, "smtp test CA")
	pair, _, _ := ca.IssueServer(t, []string{"localhost"}, net.ParseIP("127.0.0.1"))
	caFile := filepath.Join(dir, "smtp-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, caFile
}

// received maps the notice id of each accepted message (from its
// Message-ID) to how many times it arrived, and checks each parses.
func receivedByNotice(t *testing.T, srv *smtptest.Server) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range srv.Received() {
		m, err := netmail.ReadMessage(bytes.NewReader(r.Data))
		if err != nil {
			t.Fatalf("a received message does not parse: %v", err)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(m.Header.Get("Message-Id"), "<notice-"), "@health.example>")
		out[id]++
	}
	return out
}

func decodeSummary(t *testing.T, stdout string) sendSummary {
	t.Helper()
	var s sendSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, stdout)
	}
	return s
}

func TestNoticeSendEndToEnd(t *testing.T) {
	dir := t.TempDir()
	serverTLS, caFile := smtpTLS(t, dir)
	srv := smtptest.Start(t, smtptest.Options{TLS: serverTLS, Username: "ops", Password: "pw-123",
		OnData: func(to string, attempt int) error {
			switch {
			case to == "patient2@example.org" && attempt == 1:
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, try again"}
			case to == "patient3@example.org":
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<patient3@example.org> unknown"}
			}
			return nil
		}})
	wave, lines := testWave(t, dir, 12)
	rcpt := testRecipients(t, dir, 12, 4)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("pw-123\n"), 0o600)
	journal := filepath.Join(dir, "journal.jsonl")
	args := []string{"--json", "notice", "send", "--wave", wave, "--recipients", rcpt, "--smtp", srv.Addr, "--starttls",
		"--smtp-ca-file", caFile, "--username", "ops", "--password-file", pw, "--from", "Breach Notices <notices@health.example>",
		"--reply-to", "help@health.example", "--rate", "1000/s", "--journal", journal, "--concurrency", "3", "--retry-backoff", "1ms"}

	code, stdout, stderr := ctl(t, "", args...)
	if code != 1 || !strings.Contains(stderr, "2 of 12 notices not delivered") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	s := decodeSummary(t, stdout)
	if s.Notices != 12 || s.Sent != 10 || s.AlreadySent != 0 || len(s.Deferred) != 0 {
		t.Errorf("summary %+v", s)
	}
	if len(s.NoAddress) != 1 || s.NoAddress[0] != lines[3].NoticeID {
		t.Errorf("no address = %v, want [%s]", s.NoAddress, lines[3].NoticeID)
	}
	if len(s.Rejected) != 1 || s.Rejected[0].NoticeID != lines[2].NoticeID || s.Rejected[0].Code != 550 || s.Rejected[0].EnhancedCode != "5.1.1" {
		t.Errorf("rejected = %+v", s.Rejected)
	}
	got := receivedByNotice(t, srv)
	for i, l := range lines {
		want := 1
		if i == 2 || i == 3 {
			want = 0
		}
		if got[l.NoticeID] != want {
			t.Errorf("%s arrived %d times, want %d", l.NoticeID, got[l.NoticeID], want)
		}
	}
	for _, r := range srv.Received() {
		if !r.TLS || r.User != "ops" || r.From != "notices@health.example" || len(r.To) != 1 {
			t.Fatalf("received %+v", r)
		}
		m, _ := netmail.ReadMessage(bytes.NewReader(r.Data))
		if a, err := netmail.ParseAddress(m.Header.Get("To")); err != nil || a.Address != r.To[0] {
			t.Errorf("To %q for envelope %s", m.Header.Get("To"), r.To[0])
		}
		subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if err != nil || subj != lines[0].Subject || !strings.HasPrefix(m.Header.Get("Subject"), "=?utf-8?") {
			t.Errorf("Subject %q -> %q (%v)", m.Header.Get("Subject"), subj, err)
		}
	}
	for _, out := range []string{stdout, stderr} {
		if strings.Contains(out, "example.org") || strings.Contains(out, "p-1") || strings.Contains(out, "pw-123") {
			t.Errorf("output holds an address, subject id or password:\n%s", out)
		}
	}
	raw, _ := os.ReadFile(journal)
	if bytes.Contains(raw, []byte("example.org")) || bytes.Contains(raw, []byte(`"p-`)) {
		t.Errorf("journal holds an address or a subject id:\n%s", raw)
	}

	// A re-run: nothing accepted is sent again; the rejected one is tried
	// again (and refused again).
	before := len(srv.Received())
	code, stdout, _ = ctl(t, "", args...)
	if code != 1 {
		t.Fatalf("re-run: exit %d", code)
	}
	s = decodeSummary(t, stdout)
	if s.Sent != 0 || s.AlreadySent != 10 || len(s.Rejected) != 1 || len(s.NoAddress) != 1 {
		t.Errorf("re-run summary %+v", s)
	}
	if n := len(srv.Received()) - before; n != 0 {
		t.Errorf("re-run delivered %d messages", n)
	}

	// The table form names the outcomes.
	code, stdout, _ = ctl(t, "", args[1:]...)
	if code != 1 || !strings.Contains(stdout, "already sent  10") || !strings.Contains(stdout, lines[2].NoticeID+"  550 5.1.1") ||
		!strings.Contains(stdout, "no address: "+lines[3].NoticeID) {
		t.Errorf("table:\n%s", stdout)
	}
}

func TestNoticeSendRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	srv := smtptest.Start(t, smtptest.Options{})
	wave, _ := testWave(t, dir, 4)
	rcpt := testRecipients(t, dir, 4)
	good, _ := os.ReadFile(wave)
	ls := strings.SplitAfter(string(good), "\n")
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(ls[0]+ls[1]+ls[2]+`{"subject_id":"p-4","notice_id":"v2-N0004"}`+"\n"), 0o600)
	journal := filepath.Join(dir, "journal.jsonl")
	prior := `{"notice_id":"v2-OLD","outcome":"accepted","attempts":1,"at":"2026-01-01T00:00:00Z"}` + "\n"
	base := func(w string, extra ...string) []string {
		return append([]string{"notice", "send", "--wave", w, "--recipients", rcpt, "--smtp", srv.Addr, "--rate", "100/s",
			"--journal", journal, "--from", "notices@health.example"}, extra...)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"malformed line", base(bad), 1, "bad.jsonl line 4: notified_at is not a time"},
		{"no --from", []string{"notice", "send", "--wave", wave, "--recipients", rcpt, "--smtp", srv.Addr, "--rate", "1/s", "--journal", journal}, 2, `"from" not set`},
		{"bad rate", base(wave, "--rate", "fast"), 2, "--rate"},
		{"both TLS modes", base(wave, "--starttls", "--tls"), 2, "none of the others can be"},
		{"password in the clear", append(base(wave, "--username", "u", "--password-file", journal), "--smtp", "mail.example.org:25"), 2, "use --starttls or --tls"},
		{"partial DKIM", base(wave, "--dkim-key", journal), 2, "dkim"},
		{"unreachable", append(base(wave), "--smtp", unreachable(t)), 1, "cannot reach SMTP server"},
	}
	for _, tt := range tests {
		os.WriteFile(journal, []byte(prior), 0o600)
		code, stdout, stderr := ctl(t, "", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d, %q", tt.name, code, stderr, tt.code, tt.want)
		}
		if strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: error is not one line: %q", tt.name, stderr)
		}
		if stdout != "" && tt.code != 0 {
			t.Errorf("%s: printed a summary: %s", tt.name, stdout)
		}
		if raw, _ := os.ReadFile(journal); string(raw) != prior {
			t.Errorf("%s: journal changed: %q", tt.name, raw)
		}
	}
	if n := len(srv.Received()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
}

// unreachable returns a loopback address nothing listens on.
func unreachable(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestHelperImpactctl is not a test: TestNoticeSendResumesAfterKill runs
// the test binary as impactctl through it.
func TestHelperImpactctl(t *testing.T) {
	if os.Getenv("IMPACTCTL_HELPER") != "1" {
		t.Skip("helper process")
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv("IMPACTCTL_ARGS")), &args); err != nil {
		t.Fatal(err)
	}
	os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
}

func TestNoticeSendResumesAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	srv := smtptest.Start(t, smtptest.Options{Delay: 10 * time.Millisecond})
	const n, concurrency = 60, 3
	wave, lines := testWave(t, dir, n)
	rcpt := testRecipients(t, dir, n)
	journal := filepath.Join(dir, "journal.jsonl")
	args := []string{"notice", "send", "--wave", wave, "--recipients", rcpt, "--smtp", srv.Addr, "--rate", "1000/s",
		"--journal", journal, "--from", "notices@health.example", "--concurrency", fmt.Sprint(concurrency)}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperImpactctl$")
	argsJSON, _ := json.Marshal(args)
	cmd.Env = append(os.Environ(), "IMPACTCTL_HELPER=1", "IMPACTCTL_ARGS="+string(argsJSON))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(srv.Received()) < n/3 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the send did not get going")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	firstRun := receivedByNotice(t, srv)
	if len(firstRun) >= n {
		t.Fatalf("the kill came too late: %d of %d sent", len(firstRun), n)
	}
	// What the journal holds at the kill is what a re-run must never send.
	j, err := mail.OpenJournal(journal)
	if err != nil {
		t.Fatal(err)
	}
	var journaled []string
	for _, l := range lines {
		if j.Accepted(l.NoticeID) {
			journaled = append(journaled, l.NoticeID)
		}
	}
	j.Close()
	if len(journaled) == 0 {
		t.Fatal("nothing journaled before the kill")
	}

	code, stdout, stderr := ctl(t, "", append([]string{"--json"}, args...)...)
	if code != 0 {
		t.Fatalf("re-run: exit %d: %s", code, stderr)
	}
	s := decodeSummary(t, stdout)
	if s.AlreadySent != len(journaled) || s.AlreadySent+s.Sent != n {
		t.Errorf("re-run: %d already sent (journal: %d), %d sent, of %d", s.AlreadySent, len(journaled), s.Sent, n)
	}
	got := receivedByNotice(t, srv)
	twice := 0
	for _, l := range lines {
		switch c := got[l.NoticeID]; {
		case c == 0:
			t.Errorf("%s never arrived", l.NoticeID)
		case c > 2:
			t.Errorf("%s arrived %d times", l.NoticeID, c)
		case c == 2:
			twice++
		}
	}
	for _, id := range journaled {
		if got[id] != 1 {
			t.Errorf("%s was accepted before the kill and arrived %d times", id, got[id])
		}
	}
	// Only messages in flight at the kill (at most one per connection) may
	// arrive twice.
	if twice > concurrency {
		t.Errorf("%d notices arrived twice, more than the %d in flight", twice, concurrency)
	}
	t.Logf("killed after %d accepted (%d journaled); %d arrived twice", len(firstRun), len(journaled), twice)
}

func TestNoticeSendSignsWithDKIM(t *testing.T) {
	dir := t.TempDir()
	srv := smtptest.Start(t, smtptest.Options{})
	wave, _ := testWave(t, dir, 3)
	rcpt := testRecipients(t, dir, 3)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "dkim.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	code, _, stderr := ctl(t, "", "notice", "send", "--wave", wave, "--recipients", rcpt, "--smtp", srv.Addr, "--rate", "100/s",
		"--journal", filepath.Join(dir, "j"), "--from", "notices@health.example",
		"--dkim-key", keyFile, "--dkim-selector", "wave1", "--dkim-domain", "health.example")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lookup := func(domain string) ([]string, error) {
		if domain != "wave1._domainkey.health.example" {
			return nil, fmt.Errorf("no record for %s", domain)
		}
		return []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
	}
	got := srv.Received()
	if len(got) != 3 {
		t.Fatalf("received %d", len(got))
	}
	for _, r := range got {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(r.Data), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Errorf("DKIM: %+v %v", vs, err)
		}
	}
}
