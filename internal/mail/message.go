// Package mail turns notices into email that every client displays, and
// delivers them over SMTP with a journal that makes a re-run resume.
//
// One notice becomes one RFC 5322 message: multipart/alternative with a
// text/plain and a text/html part rendered from the same notice text,
// UTF-8 in quoted-printable, a Message-ID derived from the notice id, and a
// footer in both parts with the notice id, the snapshot version and the
// words to check the status in the app. Breach notices carry no links, no
// images, no scripts and nothing that tracks the reader.
package mail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	netmail "net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gomail "github.com/emersion/go-message/mail"
)

// Notice is what one message is built from: a notice as Impact rendered it
// from the pinned version, the same text the app shows.
type Notice struct {
	// ID is the notice id ("v3-7KQ2M9XW4TABCD"); the Message-ID is derived
	// from it.
	ID string
	// Version is the snapshot version the notice was rendered from.
	Version uint64
	// Subject, Body and SupportContact are the rendered notice.
	Subject, Body, SupportContact string
	// NotifiedAt is when Impact recorded the notice (the claim); it is the
	// message's Date, so the email and the app's "notified at" agree.
	NotifiedAt time.Time
}

// Header holds the addresses of a message.
type Header struct {
	// From is required; its domain is the right side of the Message-ID.
	From *netmail.Address
	// ReplyTo is optional.
	ReplyTo *netmail.Address
	// To is optional: review copies are written without it.
	To *netmail.Address
}

// noticeIDPattern is the shape of a notice id: it goes into the Message-ID
// and into file names, so nothing else is accepted.
var noticeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

// ValidNoticeID reports whether id can name a message and a file.
func ValidNoticeID(id string) bool { return noticeIDPattern.MatchString(id) }

// MessageID returns the Message-ID (without angle brackets) of a notice
// sent from an address of domain: the same for every rendering and every
// delivery attempt of the notice, so receivers can tell a repeat.
func MessageID(noticeID, domain string) string {
	return "notice-" + noticeID + "@" + domain
}

// CheckStatusLine is the footer's pointer to the app. There is no link on
// purpose: breach emails must not teach patients to follow links.
const CheckStatusLine = "You can check your status at any time in the app."

// Validate reports what makes n unusable as a message, or nil.
func (n Notice) Validate() error {
	switch {
	case !ValidNoticeID(n.ID):
		return errors.New("notice id is missing or not of letters, digits and dashes")
	case n.Version == 0:
		return errors.New("version is missing")
	case strings.TrimSpace(n.Subject) == "":
		return errors.New("subject is empty")
	case strings.TrimSpace(n.Body) == "":
		return errors.New("body is empty")
	case n.NotifiedAt.IsZero():
		return errors.New("notified time is missing")
	}
	if !utf8.ValidString(n.Subject) || !utf8.ValidString(n.Body) || !utf8.ValidString(n.SupportContact) {
		return errors.New("text is not valid UTF-8")
	}
	if hasControl(n.Subject) || hasControl(n.SupportContact) {
		return errors.New("subject or support contact holds a line break or control character")
	}
	for _, r := range n.Body {
		if r != '\n' && r != '\r' && r != '\t' && unicode.IsControl(r) {
			return errors.New("body holds a control character")
		}
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// Build returns the message of n with header h, CRLF line endings.
func Build(n Notice, h Header) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, n, h); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Write writes the message of n with header h to w.
func Write(w io.Writer, n Notice, h Header) error {
	if err := n.Validate(); err != nil {
		return err
	}
	if h.From == nil {
		return errors.New("a From address is required")
	}
	domain, err := domainOf(h.From.Address)
	if err != nil {
		return fmt.Errorf("From: %w", err)
	}
	var mh gomail.Header
	mh.SetDate(n.NotifiedAt)
	mh.SetAddressList("From", []*gomail.Address{h.From})
	if h.ReplyTo != nil {
		mh.SetAddressList("Reply-To", []*gomail.Address{h.ReplyTo})
	}
	if h.To != nil {
		mh.SetAddressList("To", []*gomail.Address{h.To})
	}
	mh.SetSubject(n.Subject)
	mh.SetMessageID(MessageID(n.ID, domain))
	// An automatic notification (RFC 3834): auto-responders should not
	// answer it.
	mh.Set("Auto-Submitted", "auto-generated")

	doc := parse(n.Body)
	mw, err := gomail.CreateInlineWriter(w, mh)
	if err != nil {
		return err
	}
	if err := writePart(mw, "text/plain", func(w io.Writer) error { return writeText(w, n, doc) }); err != nil {
		return err
	}
	if err := writePart(mw, "text/html", func(w io.Writer) error { return writeHTML(w, n, doc) }); err != nil {
		return err
	}
	return mw.Close()
}

func writePart(mw *gomail.InlineWriter, mediaType string, body func(io.Writer) error) error {
	var ph gomail.InlineHeader
	ph.SetContentType(mediaType, map[string]string{"charset": "utf-8"})
	ph.Set("Content-Transfer-Encoding", "quoted-printable")
	pw, err := mw.CreatePart(ph)
	if err != nil {
		return err
	}
	if err := body(pw); err != nil {
		_ = pw.Close()
		return err
	}
	return pw.Close()
}

// domainOf returns the domain of an addr-spec.
func domainOf(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", errors.New("address has no domain")
	}
	return addr[at+1:], nil
}

// ParseAddress parses one address ("Name <a@b>" or "a@b") for a header.
func ParseAddress(s string) (*netmail.Address, error) {
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return nil, errors.New("not an email address")
	}
	if _, err := domainOf(a.Address); err != nil {
		return nil, err
	}
	return a, nil
}

// footerLines are the footer of both parts.
func footerLines(n Notice) []string {
	lines := []string{fmt.Sprintf("Notice %s, snapshot version %d.", n.ID, n.Version)}
	if c := strings.TrimSpace(n.SupportContact); c != "" {
		lines = append(lines, "Support: "+c)
	}
	return append(lines, CheckStatusLine)
}
