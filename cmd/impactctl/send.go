package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/impact-health/impact/internal/mail"
)

// sendFlags are the flags of notice send.
type sendFlags struct {
	wave, recipients, smtpAddr, from, replyTo, rate, journal string
	startTLS, implicitTLS                                    bool
	caFile, username, passwordFile, helo                     string
	concurrency, attempts                                    int
	backoff                                                  time.Duration
	dkimKey, dkimSelector, dkimDomain                        string
}

func (a *app) sendCommand() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use: "send --wave FILE --recipients FILE --smtp HOST:PORT [--starttls|--tls] [--username U --password-file F]\n" +
			"  --from ADDR [--reply-to ADDR] --rate N/s --journal FILE [--concurrency N] [--dkim-key F --dkim-selector S --dkim-domain D]",
		Short: "Deliver the notices of a wave as email over SMTP, paced and resumable",
		Long: `Send delivers every notice of a wave file (notice claim --out) as the message
notice render writes, to the address --recipients gives for its subject (the
operator's subject_id,email CSV, read now and never stored or logged). A
notice whose subject has no address is listed in the summary, not sent.

Pacing: --rate bounds messages per second (N/s, N/m or N/h), over at most
--concurrency connections: a wave should not bring every patient to the app
in the same minute.

The journal (--journal, JSON lines of notice id and outcome, never an
address) makes a re-run resume: a notice the server accepted is never sent
again. Only the messages in flight when a run is killed may be sent twice
(their Message-ID is the same, so receivers can tell). Temporary refusals
(4xx) are retried with backoff; permanent ones (5xx) are listed in the
summary and the journal, and tried again by a re-run. The wave and the
recipients are checked whole before anything is sent: a malformed line
refuses the send, naming it.

Exit status 0 when every notice was accepted (now or before), 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.send(cmd.Context(), f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.wave, "wave", "", "wave file written by notice claim --out (required)")
	fl.StringVar(&f.recipients, "recipients", "", "subject_id,email CSV (required)")
	fl.StringVar(&f.smtpAddr, "smtp", "", "SMTP server, HOST:PORT (required)")
	fl.BoolVar(&f.startTLS, "starttls", false, "upgrade the connection with STARTTLS (submission, port 587)")
	fl.BoolVar(&f.implicitTLS, "tls", false, "speak TLS from the start (port 465)")
	fl.StringVar(&f.caFile, "smtp-ca-file", "", "PEM CA bundle that signed the SMTP server's certificate (default: the system roots)")
	fl.StringVar(&f.username, "username", "", "log in with AUTH PLAIN as this user")
	fl.StringVar(&f.passwordFile, "password-file", "", "file holding the password of --username")
	fl.StringVar(&f.from, "from", "", `From address and envelope sender, "Name <addr>" or addr (required)`)
	fl.StringVar(&f.replyTo, "reply-to", "", "Reply-To address")
	fl.StringVar(&f.rate, "rate", "", "messages per second at most: N/s, N/m or N/h (required)")
	fl.StringVar(&f.journal, "journal", "", "delivery journal; a re-run with it skips what was accepted (required)")
	fl.IntVar(&f.concurrency, "concurrency", 4, "SMTP connections sending at once")
	fl.IntVar(&f.attempts, "attempts", 5, "tries of a message on temporary failures")
	fl.DurationVar(&f.backoff, "retry-backoff", time.Second, "wait before the second try; doubles for each further one (at most 1m)")
	fl.StringVar(&f.helo, "helo", "", "name given in EHLO (default: this host's name)")
	fl.StringVar(&f.dkimKey, "dkim-key", "", "PEM private key (RSA or Ed25519) to DKIM-sign each message")
	fl.StringVar(&f.dkimSelector, "dkim-selector", "", "DKIM selector (s=) of --dkim-key")
	fl.StringVar(&f.dkimDomain, "dkim-domain", "", "DKIM signing domain (d=)")
	markRequired(cmd, "wave", "recipients", "smtp", "from", "rate", "journal")
	cmd.MarkFlagsMutuallyExclusive("starttls", "tls")
	cmd.MarkFlagsRequiredTogether("username", "password-file")
	cmd.MarkFlagsRequiredTogether("dkim-key", "dkim-selector", "dkim-domain")
	cmd.MarkFlagFilename("wave", "jsonl")
	cmd.MarkFlagFilename("recipients", "csv")
	return cmd
}

// parseRate parses "N/s", "N/m", "N/h" (or a bare N, per second).
func parseRate(s string) (rate.Limit, error) {
	n, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	per := time.Second
	switch unit {
	case "", "s":
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, usageError("--rate: the unit is /s, /m or /h")
	}
	v, err := strconv.ParseFloat(n, 64)
	if err != nil || v <= 0 || v > 1e6 {
		return 0, usageError("--rate: a positive number of messages, e.g. 50/s")
	}
	return rate.Limit(v / per.Seconds()), nil
}

// sendSummary is what send prints (as JSON with --json). Notices are named
// by notice id only.
type sendSummary struct {
	Wave        string       `json:"wave"`
	Journal     string       `json:"journal"`
	Notices     int          `json:"notices"`
	Sent        int          `json:"sent"`
	AlreadySent int          `json:"already_sent"`
	NoAddress   []string     `json:"no_address"`
	Rejected    []mail.Entry `json:"rejected"`
	Deferred    []mail.Entry `json:"deferred"`
	Seconds     float64      `json:"seconds"`
	Interrupted bool         `json:"interrupted,omitempty"`
}

func (s sendSummary) undelivered() int { return len(s.NoAddress) + len(s.Rejected) + len(s.Deferred) }

func (a *app) send(ctx context.Context, f sendFlags) error {
	h, err := parseFromFlags(f.from, f.replyTo)
	if err != nil {
		return err
	}
	limit, err := parseRate(f.rate)
	if err != nil {
		return err
	}
	if f.concurrency < 1 || f.concurrency > 100 {
		return usageError("--concurrency must be between 1 and 100")
	}
	if f.attempts < 1 {
		return usageError("--attempts must be at least 1")
	}
	srv, err := a.smtpServer(f)
	if err != nil {
		return err
	}
	signer, err := loadDKIM(f)
	if err != nil {
		return err
	}
	to, err := readRecipients(f.recipients)
	if err != nil {
		return err
	}
	wave, count, err := openWave(f.wave, h)
	if err != nil {
		return err
	}
	defer wave.Close()
	journal, err := mail.OpenJournal(f.journal)
	if err != nil {
		return err
	}
	defer journal.Close()

	sum := sendSummary{Wave: f.wave, Journal: f.journal, Notices: count, NoAddress: []string{}, Rejected: []mail.Entry{}, Deferred: []mail.Entry{}}
	var mu sync.Mutex
	p := a.newProgress(int64(count), "sending", false)
	tick := func(fn func()) {
		mu.Lock()
		fn()
		p.add(1)
		mu.Unlock()
	}
	src := func(yield func(mail.Message) bool) error {
		stop := errors.New("stopped")
		err := walkWave(wave, f.wave, func(w waveNotice) error {
			if journal.Accepted(w.notice.ID) {
				tick(func() { sum.AlreadySent++ })
				return nil
			}
			rcpt := to[w.subject]
			if rcpt == nil {
				tick(func() { sum.NoAddress = append(sum.NoAddress, w.notice.ID) })
				return nil
			}
			mh := h
			mh.To = rcpt
			data, err := mail.Build(w.notice, mh)
			if err != nil {
				return fmt.Errorf("%s line %d: %v", f.wave, w.line, err)
			}
			if signer != nil {
				if data, err = signer.Sign(data); err != nil {
					return fmt.Errorf("DKIM: %w", err)
				}
			}
			if !yield(mail.Message{NoticeID: w.notice.ID, To: rcpt.Address, Data: data}) {
				return stop
			}
			return nil
		})
		if errors.Is(err, stop) {
			return nil
		}
		return err
	}
	start := time.Now()
	err = mail.Deliver(ctx, mail.Options{
		Server: srv, From: h.From.Address, Rate: limit, Concurrency: f.concurrency,
		Attempts: f.attempts, Backoff: f.backoff, Journal: journal,
		Report: func(e mail.Entry) {
			tick(func() {
				switch e.Outcome {
				case mail.Accepted:
					sum.Sent++
				case mail.Rejected:
					sum.Rejected = append(sum.Rejected, e)
				case mail.Deferred:
					sum.Deferred = append(sum.Deferred, e)
				}
			})
		},
	}, src)
	p.done()
	sum.Seconds = time.Since(start).Seconds()
	if err != nil && ctx.Err() != nil {
		sum.Interrupted = true
		err = fmt.Errorf("interrupted after %s messages sent; re-run the same command to resume (the journal skips what was accepted)", num(sum.Sent))
	} else if err != nil && sum.Sent+len(sum.Rejected)+len(sum.Deferred) > 0 {
		err = fmt.Errorf("%w; %s messages were sent before, re-run the same command to resume", err, num(sum.Sent))
	}
	if err != nil && sum.Sent+len(sum.Rejected)+len(sum.Deferred) == 0 && !sum.Interrupted {
		// Nothing went out: the error says it all.
		return err
	}
	if perr := a.printSendSummary(sum); perr != nil && err == nil {
		err = perr
	}
	if err == nil && sum.undelivered() > 0 {
		err = fmt.Errorf("%s of %s notices not delivered (see the summary)", num(sum.undelivered()), num(sum.Notices))
	}
	return err
}

// smtpServer builds the SMTP connection settings from the flags.
func (a *app) smtpServer(f sendFlags) (mail.Server, error) {
	s := mail.Server{Addr: f.smtpAddr, Username: f.username, LocalName: f.helo}
	switch {
	case f.startTLS:
		s.Security = mail.StartTLS
	case f.implicitTLS:
		s.Security = mail.ImplicitTLS
	}
	if s.LocalName == "" {
		if host, err := os.Hostname(); err == nil && host != "" {
			s.LocalName = host
		}
	}
	if f.username != "" {
		if s.Security == mail.Plain && !isLoopback(f.smtpAddr) {
			return s, usageError("--username sends a password: use --starttls or --tls")
		}
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return s, fmt.Errorf("--password-file: %w", err)
		}
		s.Password = strings.TrimRight(string(b), "\r\n")
		if s.Password == "" {
			return s, fmt.Errorf("--password-file %s is empty", f.passwordFile)
		}
	}
	if f.caFile != "" {
		if s.Security == mail.Plain {
			return s, usageError("--smtp-ca-file needs --starttls or --tls")
		}
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return s, fmt.Errorf("--smtp-ca-file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return s, fmt.Errorf("--smtp-ca-file %s holds no PEM certificate", f.caFile)
		}
		s.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

func (a *app) printSendSummary(s sendSummary) error {
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	w := a.stdout
	perSec := 0.0
	if s.Seconds > 0 {
		perSec = float64(s.Sent) / s.Seconds
	}
	fmt.Fprintf(w, "wave %s: %s notices, journal %s\n", s.Wave, num(s.Notices), s.Journal)
	tw := newTable(w)
	fmt.Fprintf(tw, "  sent\t%s\taccepted by the server in this run (%.1fs, %.1f/s)\n", num(s.Sent), s.Seconds, perSec)
	fmt.Fprintf(tw, "  already sent\t%s\taccepted in an earlier run (journal)\n", num(s.AlreadySent))
	fmt.Fprintf(tw, "  no address\t%s\tsubject not in %s: not sent\n", num(len(s.NoAddress)), "--recipients")
	fmt.Fprintf(tw, "  rejected\t%s\tpermanent refusal (5xx); a re-run tries again\n", num(len(s.Rejected)))
	fmt.Fprintf(tw, "  deferred\t%s\ttemporary refusals (4xx) until the attempts ran out; a re-run tries again\n", num(len(s.Deferred)))
	tw.Flush()
	listIDs(w, "no address", s.NoAddress)
	listEntries(w, "rejected", s.Rejected)
	listEntries(w, "deferred", s.Deferred)
	return nil
}

// listLimit bounds the ids a table lists per kind (--json lists all).
const listLimit = 20

func listIDs(w io.Writer, kind string, ids []string) {
	if len(ids) == 0 {
		return
	}
	shown := ids[:min(len(ids), listLimit)]
	fmt.Fprintf(w, "%s: %s", kind, strings.Join(shown, ", "))
	if len(ids) > len(shown) {
		fmt.Fprintf(w, " and %s more (--json lists all)", num(len(ids)-len(shown)))
	}
	fmt.Fprintln(w)
}

func listEntries(w io.Writer, kind string, es []mail.Entry) {
	if len(es) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", kind)
	tw := newTable(w)
	for i, e := range es {
		if i == listLimit {
			fmt.Fprintf(tw, "  ... and %s more (--json lists all)\n", num(len(es)-listLimit))
			break
		}
		reply := strconv.Itoa(e.Code)
		if e.EnhancedCode != "" {
			reply += " " + e.EnhancedCode
		}
		if e.Code == 0 {
			reply = e.Reason
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d attempt(s)\n", e.NoticeID, reply, e.Attempts)
	}
	tw.Flush()
}
