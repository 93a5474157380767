package mail_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"github.com/impact-health/impact/internal/mail"
	"github.com/impact-health/impact/internal/mail/smtptest"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

// tlsPair returns a server TLS config with a throw-away certificate for
// 127.0.0.1, and a client config that trusts it.
func tlsPair(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca := impacttest.NewCA(t, "smtp test CA")
	pair, _, _ := ca.IssueServer(t, []string{"localhost"}, net.ParseIP("127.0.0.1"))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// messages builds n messages, to rcpt1@example.org ... rcptN@example.org.
func messages(t testing.TB, n int) []mail.Message {
	t.Helper()
	from, _ := mail.ParseAddress("Notices <notices@health.example>")
	var out []mail.Message
	for i := 1; i <= n; i++ {
		to, _ := mail.ParseAddress(fmt.Sprintf("rcpt%d@example.org", i))
		id := fmt.Sprintf("v1-M%04d", i)
		data, err := mail.Build(mail.Notice{ID: id, Version: 1, Subject: "Your notice", Body: "Body of " + id,
			NotifiedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, mail.Header{From: from, To: to})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mail.Message{NoticeID: id, To: to.Address, Data: data})
	}
	return out
}

// skipAccepted yields the messages the journal does not hold as accepted,
// as a caller of Deliver must.
func skipAccepted(j *mail.Journal, msgs []mail.Message) mail.Source {
	return func(yield func(mail.Message) bool) error {
		for _, m := range msgs {
			if j.Accepted(m.NoticeID) {
				continue
			}
			if !yield(m) {
				return nil
			}
		}
		return nil
	}
}

func openJournal(t *testing.T, path string) *mail.Journal {
	t.Helper()
	j, err := mail.OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// entries collects reported entries.
type entries struct {
	mu  sync.Mutex
	all []mail.Entry
}

func (e *entries) add(en mail.Entry) {
	e.mu.Lock()
	e.all = append(e.all, en)
	e.mu.Unlock()
}

func (e *entries) byOutcome() map[mail.Outcome]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := map[mail.Outcome]int{}
	for _, en := range e.all {
		m[en.Outcome]++
	}
	return m
}

// perRecipient counts the messages the server accepted per recipient.
func perRecipient(srv *smtptest.Server) map[string]int {
	m := map[string]int{}
	for _, r := range srv.Received() {
		for _, to := range r.To {
			m[to]++
		}
	}
	return m
}

func baseOptions(srv *smtptest.Server, j *mail.Journal, e *entries) mail.Options {
	return mail.Options{
		Server: mail.Server{Addr: srv.Addr, Timeout: 10 * time.Second},
		From:   "notices@health.example", Rate: rate.Inf, Concurrency: 3, Attempts: 4,
		Backoff: time.Millisecond, Journal: j, Report: e.add,
	}
}

func TestDeliverStartTLSAuthEveryMessageOnce(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	srv := smtptest.Start(t, smtptest.Options{TLS: serverTLS, Username: "ops", Password: "s3cret"})
	j := openJournal(t, filepath.Join(t.TempDir(), "journal"))
	defer j.Close()
	var e entries
	o := baseOptions(srv, j, &e)
	o.Server.Security, o.Server.TLS, o.Server.Username, o.Server.Password = mail.StartTLS, clientTLS, "ops", "s3cret"
	msgs := messages(t, 25)
	if err := mail.Deliver(context.Background(), o, skipAccepted(j, msgs)); err != nil {
		t.Fatal(err)
	}
	got := perRecipient(srv)
	for _, m := range msgs {
		if got[m.To] != 1 {
			t.Errorf("%s received %d times", m.NoticeID, got[m.To])
		}
		if !j.Accepted(m.NoticeID) {
			t.Errorf("%s not journaled as accepted", m.NoticeID)
		}
	}
	for _, r := range srv.Received() {
		if !r.TLS || r.User != "ops" || r.From != "notices@health.example" {
			t.Fatalf("received over TLS=%v as %q from %q", r.TLS, r.User, r.From)
		}
		if _, err := netmail.ReadMessage(bytes.NewReader(r.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if c := e.byOutcome(); c[mail.Accepted] != 25 || len(e.all) != 25 {
		t.Errorf("reported %v", c)
	}
}

func TestDeliverImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	srv := smtptest.Start(t, smtptest.Options{TLS: serverTLS, Implicit: true})
	j := openJournal(t, filepath.Join(t.TempDir(), "journal"))
	defer j.Close()
	var e entries
	o := baseOptions(srv, j, &e)
	o.Server.Security, o.Server.TLS = mail.ImplicitTLS, clientTLS
	if err := mail.Deliver(context.Background(), o, skipAccepted(j, messages(t, 3))); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Received()); n != 3 {
		t.Errorf("received %d", n)
	}
}

func TestDeliverRetriesTemporaryReportsPermanent(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{OnData: func(to string, attempt int) error {
		switch {
		case to == "rcpt2@example.org" && attempt == 1:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		case to == "rcpt3@example.org":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<rcpt3@example.org>: no such user"}
		case to == "rcpt4@example.org":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case to == "rcpt5@example.org" && attempt == 1:
			return smtptest.DropConnection
		}
		return nil
	}})
	path := filepath.Join(t.TempDir(), "journal")
	j := openJournal(t, path)
	var e entries
	o := baseOptions(srv, j, &e)
	msgs := messages(t, 6)
	if err := mail.Deliver(context.Background(), o, skipAccepted(j, msgs)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	got := perRecipient(srv)
	for i, want := range []int{1, 1, 0, 0, 1, 1} {
		if got[msgs[i].To] != want {
			t.Errorf("%s received %d times, want %d", msgs[i].To, got[msgs[i].To], want)
		}
	}
	if srv.Connections() < 2 {
		t.Errorf("the dropped connection was not replaced (%d connections)", srv.Connections())
	}
	byID := map[string]mail.Entry{}
	for _, en := range e.all {
		byID[en.NoticeID] = en
	}
	if en := byID["v1-M0002"]; en.Outcome != mail.Accepted || en.Attempts != 2 {
		t.Errorf("4xx then success: %+v", en)
	}
	if en := byID["v1-M0003"]; en.Outcome != mail.Rejected || en.Code != 550 || en.EnhancedCode != "5.1.1" || en.Attempts != 1 {
		t.Errorf("5xx: %+v", en)
	}
	if en := byID["v1-M0004"]; en.Outcome != mail.Deferred || en.Code != 452 || en.Attempts != 4 {
		t.Errorf("4xx every time: %+v", en)
	}
	if en := byID["v1-M0005"]; en.Outcome != mail.Accepted || en.Attempts != 2 {
		t.Errorf("dropped connection then success: %+v", en)
	}
	// The journal holds ids and outcomes, never an address or reply text.
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("example.org")) || bytes.Contains(raw, []byte("no such user")) {
		t.Errorf("journal holds an address or a reply:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte(`"notice_id":"v1-M0003","outcome":"rejected","code":550,"enhanced_code":"5.1.1"`)) {
		t.Errorf("journal lacks the rejection:\n%s", raw)
	}
	// A re-run sends only what was not accepted.
	j = openJournal(t, path)
	defer j.Close()
	before := len(srv.Received())
	if err := mail.Deliver(context.Background(), o2(o, j), skipAccepted(j, msgs)); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Received()) - before; n != 0 {
		t.Errorf("re-run delivered %d messages (the rest are still refused)", n)
	}
	got = perRecipient(srv)
	for _, i := range []int{0, 1, 4, 5} {
		if got[msgs[i].To] != 1 {
			t.Errorf("after the re-run %s received %d times", msgs[i].To, got[msgs[i].To])
		}
	}
}

func o2(o mail.Options, j *mail.Journal) mail.Options {
	o.Journal = j
	o.Report = nil
	return o
}

func TestDeliverResumesAfterCancel(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Delay: 2 * time.Millisecond})
	path := filepath.Join(t.TempDir(), "journal")
	msgs := messages(t, 40)
	ctx, cancel := context.WithCancel(context.Background())
	j := openJournal(t, path)
	var e entries
	o := baseOptions(srv, j, &e)
	o.Report = func(en mail.Entry) {
		e.add(en)
		if len(e.all) == 10 {
			cancel()
		}
	}
	err := mail.Deliver(ctx, o, skipAccepted(j, msgs))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	j.Close()
	first := len(srv.Received())
	if first >= len(msgs) || first < 10 {
		t.Fatalf("first run delivered %d of %d", first, len(msgs))
	}
	j = openJournal(t, path)
	defer j.Close()
	if j.Loaded() != first {
		t.Errorf("journal holds %d entries, the server accepted %d", j.Loaded(), first)
	}
	if err := mail.Deliver(context.Background(), o2(o, j), skipAccepted(j, msgs)); err != nil {
		t.Fatal(err)
	}
	got := perRecipient(srv)
	for _, m := range msgs {
		if got[m.To] != 1 {
			t.Errorf("%s received %d times over the two runs", m.NoticeID, got[m.To])
		}
	}
}

func TestDeliverConnectFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	authSrv := smtptest.Start(t, smtptest.Options{Username: "ops", Password: "right"})
	plainSrv := smtptest.Start(t, smtptest.Options{})
	tests := []struct {
		name string
		srv  mail.Server
		want string
	}{
		{"unreachable", mail.Server{Addr: closed}, "cannot reach SMTP server " + closed},
		{"bad login", mail.Server{Addr: authSrv.Addr, Username: "ops", Password: "wrong"}, "AUTH PLAIN: SMTP error 535"},
		{"no STARTTLS", mail.Server{Addr: plainSrv.Addr, Security: mail.StartTLS}, "STARTTLS"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "journal")
		os.WriteFile(path, []byte(`{"notice_id":"v1-OLD","outcome":"accepted","attempts":1,"at":"2026-01-01T00:00:00Z"}`+"\n"), 0o600)
		j := openJournal(t, path)
		var e entries
		o := mail.Options{Server: tt.srv, From: "n@health.example", Rate: rate.Inf, Journal: j, Report: e.add}
		o.Server.Timeout = 5 * time.Second
		err := mail.Deliver(context.Background(), o, skipAccepted(j, messages(t, 2)))
		j.Close()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		if len(e.all) != 0 {
			t.Errorf("%s: reported %d outcomes", tt.name, len(e.all))
		}
		raw, _ := os.ReadFile(path)
		if strings.Count(string(raw), "\n") != 1 || !strings.Contains(string(raw), "v1-OLD") {
			t.Errorf("%s: journal changed: %q", tt.name, raw)
		}
	}
	if n := len(authSrv.Received()) + len(plainSrv.Received()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
}

func TestDeliverStopsWhenTheSenderIsRefused(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: func() *tls.Config { s, _ := tlsPair(t); return s }()})
	// A plain connection to a server that requires TLS: MAIL FROM gets 530.
	j := openJournal(t, filepath.Join(t.TempDir(), "journal"))
	defer j.Close()
	var e entries
	err := mail.Deliver(context.Background(), baseOptions(srv, j, &e), skipAccepted(j, messages(t, 5)))
	if err == nil || !strings.Contains(err.Error(), "refused the sender") {
		t.Fatalf("err = %v", err)
	}
	if len(e.all) != 0 || len(srv.Received()) != 0 {
		t.Errorf("reported %d, received %d", len(e.all), len(srv.Received()))
	}
}

func TestJournalTornTailCorruptionAndLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	good := `{"notice_id":"v1-A","outcome":"accepted","attempts":1,"at":"2026-01-01T00:00:00Z"}` + "\n" +
		`{"notice_id":"v1-B","outcome":"rejected","code":550,"attempts":1,"at":"2026-01-01T00:00:00Z"}` + "\n"
	os.WriteFile(path, []byte(good+`{"notice_id":"v1-C","outc`), 0o600)
	j := openJournal(t, path)
	if !j.Accepted("v1-A") || j.Accepted("v1-B") || j.Accepted("v1-C") || j.Loaded() != 2 {
		t.Errorf("loaded %d; A %v B %v C %v", j.Loaded(), j.Accepted("v1-A"), j.Accepted("v1-B"), j.Accepted("v1-C"))
	}
	if _, err := mail.OpenJournal(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second open: %v", err)
	}
	if err := j.Record(mail.Entry{NoticeID: "v1-C", Outcome: mail.Accepted, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	raw, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], `{"notice_id":"v1-C","outcome":"accepted"`) {
		t.Errorf("journal after the torn tail:\n%s", raw)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}

	os.WriteFile(path, []byte(good[:len(good)/2]+"\n"+good), 0o600)
	if _, err := mail.OpenJournal(path); err == nil || !strings.Contains(err.Error(), "line 2: not a journal entry") {
		t.Errorf("corrupt line: %v", err)
	}
}

func TestJournalConcurrentRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j := openJournal(t, path)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := j.Record(mail.Entry{NoticeID: fmt.Sprintf("v1-G%dI%d", g, i), Outcome: mail.Accepted, Attempts: 1}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	j.Close()
	j = openJournal(t, path)
	defer j.Close()
	if j.Loaded() != 400 || !j.Accepted("v1-G7I49") {
		t.Errorf("loaded %d entries, want 400", j.Loaded())
	}
}
