package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Security is how the connection to the SMTP server is protected.
type Security int

// Connection security.
const (
	// Plain is no TLS (a relay on the same host).
	Plain Security = iota
	// StartTLS upgrades a plain connection (submission, port 587).
	StartTLS
	// ImplicitTLS speaks TLS from the start (port 465).
	ImplicitTLS
)

// Server is where and how to submit messages.
type Server struct {
	Addr     string // HOST:PORT
	Security Security
	// TLS configures StartTLS and ImplicitTLS; its ServerName defaults to
	// the host of Addr.
	TLS *tls.Config
	// Username and Password, when Username is set, authenticate with AUTH
	// PLAIN.
	Username, Password string
	// LocalName is the name given in EHLO (default "localhost").
	LocalName string
	// Timeout bounds the dial and each command (default 1 minute).
	Timeout time.Duration
}

// Message is one message to deliver: to one recipient, for one notice.
type Message struct {
	NoticeID string
	To       string // the addr-spec of the recipient
	Data     []byte // the whole message, CRLF line endings
}

// Options of a delivery run.
type Options struct {
	Server Server
	// From is the envelope sender (MAIL FROM), an addr-spec.
	From string
	// Rate bounds the messages (attempts included) per second.
	Rate rate.Limit
	// Concurrency is the number of connections sending at once (default 1).
	Concurrency int
	// Attempts bounds the tries of a message on temporary failures
	// (default 5).
	Attempts int
	// Backoff is the wait before the second attempt; it doubles for each
	// further one, up to MaxBackoff (defaults 1s and 1m).
	Backoff, MaxBackoff time.Duration
	// Journal records every outcome before it is reported.
	Journal *Journal
	// Report, when set, is called once per message with its entry, from one
	// goroutine at a time.
	Report func(Entry)
}

// Source yields the messages to deliver, in order; it stops when yield
// returns false and returns what made it fail, if anything.
type Source func(yield func(Message) bool) error

// Deliver sends every message of src, paced by o.Rate over at most
// o.Concurrency connections, and records each outcome in o.Journal. A
// message the journal holds as accepted must not be in src (the caller
// skips it). Temporary failures (4xx, a dropped connection) are retried
// with backoff; a permanent one (5xx) is recorded and the run goes on.
//
// Deliver returns an error, and stops sending, when the run cannot go on:
// the server cannot be reached or refuses the login or the sender, the
// journal cannot be written, or ctx is done. Messages in flight then
// finish; no message is cut midway.
func Deliver(ctx context.Context, o Options, src Source) error {
	if o.Journal == nil {
		return errors.New("mail: a journal is required")
	}
	if o.Rate <= 0 {
		return errors.New("mail: the rate must be positive")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(time.Minute, o.Backoff)
	}
	if o.Server.Timeout <= 0 {
		o.Server.Timeout = time.Minute
	}
	if o.Server.LocalName == "" {
		o.Server.LocalName = "localhost"
	}
	// Connect once before anything is sent: a wrong address, TLS setting
	// or login fails here, with nothing sent.
	first, err := o.Server.connect(ctx)
	if err != nil {
		return err
	}
	d := &delivery{o: o, limiter: rate.NewLimiter(o.Rate, 1)}
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan Message)
	stopped := false
	g.Go(func() error {
		defer close(jobs)
		return src(func(m Message) bool {
			select {
			case jobs <- m:
				return true
			case <-gctx.Done():
				stopped = true
				return false
			}
		})
	})
	for i := range o.Concurrency {
		w := &worker{d: d}
		if i == 0 {
			w.c = first
		}
		g.Go(func() error {
			defer w.close()
			for m := range jobs {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if err := w.deliver(gctx, m); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err = g.Wait()
	if ctx.Err() != nil && (stopped || errors.Is(err, context.Canceled)) {
		// Interrupted: what was sent is in the journal.
		return ctx.Err()
	}
	return err
}

type delivery struct {
	o        Options
	limiter  *rate.Limiter
	reportMu sync.Mutex
}

func (d *delivery) report(e Entry) error {
	if err := d.o.Journal.Record(e); err != nil {
		return err
	}
	if d.o.Report != nil {
		d.reportMu.Lock()
		d.o.Report(e)
		d.reportMu.Unlock()
	}
	return nil
}

// worker sends messages one at a time over its own connection, kept
// between messages.
type worker struct {
	d *delivery
	c *smtp.Client
}

func (w *worker) close() {
	if w.c != nil {
		_ = w.c.Quit()
		_ = w.c.Close()
		w.c = nil
	}
}

// deliver tries m until it is accepted, rejected, or out of attempts, and
// records the outcome. It returns an error only when the run must stop.
func (w *worker) deliver(ctx context.Context, m Message) error {
	o := w.d.o
	wait := o.Backoff
	var last *smtp.SMTPError
	var lastErr error
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		if attempt > 1 {
			// Full jitter around the doubling wait keeps the workers from
			// retrying in step.
			sleep := wait/2 + rand.N(wait/2+1) // #nosec G404 -- jitter of a retry wait, not a secret
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(sleep):
			}
			wait = min(2*wait, o.MaxBackoff)
		}
		if err := w.d.limiter.Wait(ctx); err != nil {
			return err
		}
		res := w.try(ctx, m)
		switch res.kind {
		case sent:
			return w.d.report(Entry{NoticeID: m.NoticeID, Outcome: Accepted, Attempts: attempt, At: time.Now().UTC()})
		case permanent:
			e := rejection(m.NoticeID, Rejected, res.smtp, attempt)
			e.Reason = res.reason
			return w.d.report(e)
		case fatal:
			return res.err
		case temporary:
			last, lastErr = res.smtp, res.err
		}
	}
	if last == nil {
		// The connection kept failing, not the message: the server is
		// gone, stop the run (a re-run resumes).
		return fmt.Errorf("SMTP server %s: %v; stopped after %d attempts", o.Server.Addr, lastErr, o.Attempts)
	}
	return w.d.report(rejection(m.NoticeID, Deferred, last, o.Attempts))
}

func rejection(id string, out Outcome, e *smtp.SMTPError, attempts int) Entry {
	en := Entry{NoticeID: id, Outcome: out, Attempts: attempts, At: time.Now().UTC()}
	if e != nil {
		en.Code = e.Code
		if e.EnhancedCode != (smtp.EnhancedCode{}) && e.EnhancedCode != smtp.NoEnhancedCode {
			en.EnhancedCode = fmt.Sprintf("%d.%d.%d", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
		}
	}
	return en
}

type resultKind int

const (
	sent resultKind = iota
	permanent
	temporary
	fatal
)

type result struct {
	kind   resultKind
	smtp   *smtp.SMTPError // the reply, for permanent and temporary replies
	reason string          // why, for a permanent failure without a reply
	err    error           // a temporary connection failure or a fatal error
}

// try makes one attempt at m on the worker's connection, dialling it if
// needed.
func (w *worker) try(ctx context.Context, m Message) result {
	o := w.d.o
	if w.c == nil {
		c, err := o.Server.connect(ctx)
		if err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code/100 == 5 {
				return result{kind: fatal, err: err}
			}
			return result{kind: temporary, err: err}
		}
		w.c = c
	}
	utf8 := !isASCII(o.From) || !isASCII(m.To)
	if ok, _ := w.c.Extension("SMTPUTF8"); utf8 && !ok {
		return result{kind: permanent, reason: "the address is not ASCII and the server does not offer SMTPUTF8"}
	}
	stage := "MAIL FROM"
	err := w.c.Mail(o.From, &smtp.MailOptions{UTF8: utf8})
	if err == nil {
		stage = "RCPT TO"
		err = w.c.Rcpt(m.To, nil)
	}
	if err == nil {
		stage = "DATA"
		err = w.data(m.Data)
	}
	if err == nil {
		return result{kind: sent}
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		// The connection broke: drop it and try again on a new one. A break
		// after the whole message was written is ambiguous (the server may
		// have accepted it), like a crash: the message may arrive twice.
		w.drop()
		return result{kind: temporary, err: fmt.Errorf("%s: %w", stage, err)}
	}
	if se.Code == 421 {
		// The server is closing this connection.
		w.drop()
	} else if rerr := w.c.Reset(); rerr != nil {
		w.drop()
	}
	switch {
	case se.Code/100 == 4:
		return result{kind: temporary, smtp: se, err: fmt.Errorf("%s: %d", stage, se.Code)}
	case stage == "MAIL FROM":
		// The sender itself is refused: every message would be.
		return result{kind: fatal, err: fmt.Errorf("SMTP server %s refused the sender %s: %s", o.Server.Addr, o.From, oneLine(se.Error()))}
	default:
		return result{kind: permanent, smtp: se}
	}
}

func (w *worker) data(msg []byte) error {
	wc, err := w.c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write(msg); err != nil {
		_ = wc.Close()
		return err
	}
	return wc.Close()
}

func (w *worker) drop() {
	if w.c != nil {
		_ = w.c.Close()
		w.c = nil
	}
}

// connect dials, greets, secures and logs in. Errors say which step failed
// and never quote a recipient (there is none yet).
func (s Server) connect(ctx context.Context) (*smtp.Client, error) {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, fmt.Errorf("SMTP address %q: %v", s.Addr, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLS != nil {
		cfg = s.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	dctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	var conn net.Conn
	if s.Security == ImplicitTLS {
		conn, err = (&tls.Dialer{Config: cfg}).DialContext(dctx, "tcp", s.Addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(dctx, "tcp", s.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach SMTP server %s: %v", s.Addr, unwrapNet(err))
	}
	_ = conn.SetDeadline(time.Now().Add(s.Timeout))
	var c *smtp.Client
	fail := func(step string, err error) (*smtp.Client, error) {
		if c != nil {
			_ = c.Close()
		} else {
			_ = conn.Close()
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, &connectError{msg: fmt.Sprintf("SMTP server %s: %s: %s", s.Addr, step, oneLine(se.Error())), smtp: se}
		}
		return nil, fmt.Errorf("SMTP server %s: %s: %v", s.Addr, step, unwrapNet(err))
	}
	if s.Security == StartTLS {
		// go-smtp greets as "localhost" before the upgrade; LocalName is
		// given in the EHLO after it.
		c, err = smtp.NewClientStartTLS(conn, cfg)
		if err != nil {
			return fail("STARTTLS", err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = s.Timeout
	c.SubmissionTimeout = 5 * s.Timeout
	if err := c.Hello(s.LocalName); err != nil {
		return fail("EHLO", err)
	}
	if s.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fail("AUTH", errors.New("the server does not offer AUTH"))
		}
		if err := c.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			return fail("AUTH PLAIN", err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// connectError is a reply refusing the connection, the TLS upgrade or the
// login.
type connectError struct {
	msg  string
	smtp *smtp.SMTPError
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.smtp }

// unwrapNet keeps the innermost reason of a network error ("connection
// refused"), without the Go-specific wrapping.
func unwrapNet(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	if errors.Is(err, io.EOF) {
		return errors.New("the server closed the connection")
	}
	return err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
