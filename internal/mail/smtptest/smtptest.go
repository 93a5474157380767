// Package smtptest runs a real SMTP server (go-smtp) on a loopback port for
// tests: it keeps every message it accepts, can require STARTTLS and AUTH
// PLAIN, and can answer chosen messages with an error or drop the
// connection, as real servers do.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a server.
type Options struct {
	// TLS, when set, offers STARTTLS (or, with Implicit, speaks TLS from
	// the start) and refuses mail on a connection that is not encrypted.
	TLS      *tls.Config
	Implicit bool
	// Username and Password, when set, require AUTH PLAIN before MAIL.
	Username, Password string
	// OnData, when set, is called for each message before it is kept,
	// with the recipient and how many times a message for it reached DATA
	// (1 the first time). An error is the server's reply; DropConnection
	// closes the connection without a reply.
	OnData func(to string, attempt int) error
	// Delay is how long the server takes to accept each message.
	Delay time.Duration
}

// DropConnection, returned by OnData, closes the connection mid-message.
var DropConnection = errors.New("smtptest: drop the connection")

// Received is one accepted message.
type Received struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	User string
}

// Server is a running server.
type Server struct {
	Addr string

	opts Options
	srv  *smtp.Server

	mu       sync.Mutex
	received []Received
	attempts map[string]int
	conns    int
}

// Start starts a server on a free loopback port; it stops at the end of
// the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts, attempts: map[string]int{}}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.EnableSMTPUTF8 = true
	s.srv.TLSConfig = opts.TLS
	// On loopback without TLS, AUTH is offered all the same.
	s.srv.AllowInsecureAuth = opts.TLS == nil
	s.srv.ErrorLog = quietLog{}
	var l net.Listener
	var err error
	if opts.Implicit && opts.TLS != nil {
		l, err = tls.Listen("tcp", "127.0.0.1:0", opts.TLS)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Received returns the messages accepted so far.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Connections returns how many connections the server has had.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	return &session{s: s, c: c}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.opts.Username || pass != ss.s.opts.Password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.user = user
		return nil
	}), nil
}

func (ss *session) tls() bool {
	_, ok := ss.c.TLSConnectionState()
	return ok
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.TLS != nil && !ss.tls() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if ss.s.opts.Username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil {
		return err
	}
	s := ss.s
	key := ""
	if len(ss.to) > 0 {
		key = ss.to[0]
	}
	s.mu.Lock()
	s.attempts[key]++
	n := s.attempts[key]
	s.mu.Unlock()
	if s.opts.Delay > 0 {
		time.Sleep(s.opts.Delay)
	}
	if s.opts.OnData != nil {
		if err := s.opts.OnData(key, n); err != nil {
			if errors.Is(err, DropConnection) {
				_ = ss.c.Conn().Close()
			}
			return err
		}
	}
	s.mu.Lock()
	s.received = append(s.received, Received{From: ss.from, To: append([]string(nil), ss.to...), Data: b.Bytes(), TLS: ss.tls(), User: ss.user})
	s.mu.Unlock()
	return nil
}

func (ss *session) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *session) Logout() error { return nil }

// quietLog drops the server's log lines (a dropped connection is logged).
type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}
