package mail

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

var notifiedAt = time.Date(2026, 1, 12, 9, 30, 0, 0, time.UTC)

func testNotice() Notice {
	return Notice{
		ID:      "v3-7KQ2M9XW4TABCD",
		Version: 3,
		Subject: "Your health information was affected by the Health Documents breach",
		Body: "Kia ora,\n\nWe are writing to tell you that some of your health information was taken.\n\n" +
			"What you can do:\n- be careful with unexpected calls\n- we will never ask for your password\n  or for payment\n\n" +
			"1. Read this notice.\n2. Call us if it worries you.\n\n" +
			"Reference: notice v3-7KQ2M9XW4TABCD, snapshot version 3.\n",
		SupportContact: "0800 000 011 (support line, 8am-8pm)",
		NotifiedAt:     notifiedAt,
	}
}

func testHeader(t *testing.T, to string) Header {
	t.Helper()
	from, err := ParseAddress("Health Breach Notices <notices@health.example>")
	if err != nil {
		t.Fatal(err)
	}
	reply, err := ParseAddress("support@health.example")
	if err != nil {
		t.Fatal(err)
	}
	h := Header{From: from, ReplyTo: reply}
	if to != "" {
		h.To, err = ParseAddress(to)
		if err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// parsed is a message as the standard library's parsers see it.
type parsed struct {
	header      netmail.Header
	plain, html string
	rawParts    [][]byte
}

// parseMessage parses raw with net/mail and mime/multipart, independent of
// the library that wrote it, and fails on anything but
// multipart/alternative with a text/plain and a text/html part in UTF-8
// quoted-printable.
func parseMessage(t *testing.T, raw []byte) parsed {
	t.Helper()
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	if v := m.Header.Get("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version = %q", v)
	}
	p := parsed{header: m.Header}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		pt, pp, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		if pp["charset"] != "utf-8" {
			t.Errorf("%s charset = %q", pt, pp["charset"])
		}
		if cte := part.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
			t.Errorf("%s Content-Transfer-Encoding = %q", pt, cte)
		}
		enc, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		p.rawParts = append(p.rawParts, enc)
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
		if err != nil {
			t.Fatalf("%s: quoted-printable: %v", pt, err)
		}
		types = append(types, pt)
		dec = bytes.ReplaceAll(dec, []byte("\r\n"), []byte("\n"))
		switch pt {
		case "text/plain":
			p.plain = string(dec)
		case "text/html":
			p.html = string(dec)
		}
	}
	if strings.Join(types, ",") != "text/plain,text/html" {
		t.Fatalf("parts = %v, want text/plain then text/html", types)
	}
	return p
}

func TestMessageStructureAndHeaders(t *testing.T) {
	n := testNotice()
	raw, err := Build(n, testHeader(t, "Aroha Ngata <aroha@example.org>"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a line ends in a bare LF; SMTP needs CRLF")
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if len(sc.Text()) > 78 {
			t.Errorf("line longer than 78 characters: %q", sc.Text())
		}
	}
	p := parseMessage(t, raw)
	if got := p.header.Get("Message-Id"); got != "<notice-v3-7KQ2M9XW4TABCD@health.example>" {
		t.Errorf("Message-Id = %q", got)
	}
	d, err := p.header.Date()
	if err != nil || !d.Equal(notifiedAt) {
		t.Errorf("Date = %v (%v), want %v", d, err, notifiedAt)
	}
	for name, want := range map[string]string{
		"From":     "notices@health.example",
		"Reply-To": "support@health.example",
		"To":       "aroha@example.org",
	} {
		a, err := netmail.ParseAddress(p.header.Get(name))
		if err != nil || a.Address != want {
			t.Errorf("%s = %q (%v), want %s", name, p.header.Get(name), err, want)
		}
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil || subj != n.Subject {
		t.Errorf("Subject = %q (%v)", subj, err)
	}
	if p.header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", p.header.Get("Auto-Submitted"))
	}
}

func TestMessageBothPartsHoldNoticeAndFooter(t *testing.T) {
	n := testNotice()
	raw, err := Build(n, testHeader(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	p := parseMessage(t, raw)
	words := []string{
		"Kia ora,",
		"We are writing to tell you that some of your health information was taken.",
		"be careful with unexpected calls",
		"we will never ask for your password",
		"or for payment",
		"Call us if it worries you.",
		"Notice v3-7KQ2M9XW4TABCD, snapshot version 3.",
		"Support: 0800 000 011 (support line, 8am-8pm)",
		CheckStatusLine,
	}
	for _, w := range words {
		if !strings.Contains(p.plain, w) {
			t.Errorf("text/plain lacks %q", w)
		}
		if !strings.Contains(p.html, w) {
			t.Errorf("text/html lacks %q", w)
		}
	}
	if !strings.Contains(p.plain, "- be careful with unexpected calls\n") || !strings.Contains(p.plain, "2. Call us") {
		t.Errorf("text/plain lost the lists:\n%s", p.plain)
	}
	for _, want := range []string{"<ul ", "<ol ", "<li ", "<p "} {
		if !strings.Contains(p.html, want) {
			t.Errorf("text/html has no %s element", want)
		}
	}
	if strings.Count(p.html, "<li ") != 4 {
		t.Errorf("text/html has %d list items, want 4", strings.Count(p.html, "<li "))
	}
	if p.header.Get("To") != "" {
		t.Errorf("To = %q, want none when no recipient is given", p.header.Get("To"))
	}
}

// htmlTag matches the name of every element in an HTML text.
var htmlTag = regexp.MustCompile(`</?([A-Za-z!][A-Za-z0-9]*)`)

// allowedTags are the only elements a notice's HTML may hold: no links,
// images, scripts, styles, frames or forms.
var allowedTags = map[string]bool{"!doctype": true, "html": true, "head": true, "meta": true, "title": true,
	"body": true, "div": true, "p": true, "br": true, "ul": true, "ol": true, "li": true, "hr": true}

func TestMessageEscapesAndHasNoActiveContent(t *testing.T) {
	n := testNotice()
	n.Subject = `Ā notice <b>"quoted"</b> & more`
	n.Body = "Look at <script>alert(1)</script> & <a href=\"https://evil.example\">this</a>\n<img src=x onerror=y>\n"
	raw, err := Build(n, testHeader(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	p := parseMessage(t, raw)
	for _, m := range htmlTag.FindAllStringSubmatch(p.html, -1) {
		if !allowedTags[strings.ToLower(m[1])] {
			t.Errorf("text/html holds a <%s> element", m[1])
		}
	}
	if !strings.Contains(p.html, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;a href=&#34;https://evil.example&#34;&gt;") {
		t.Errorf("text/html did not escape the body:\n%s", p.html)
	}
	if !strings.Contains(p.html, "<title>Ā notice &lt;b&gt;&#34;quoted&#34;&lt;/b&gt; &amp; more</title>") {
		t.Errorf("text/html did not escape the subject")
	}
	if !strings.Contains(p.plain, "<script>alert(1)</script>") {
		t.Error("text/plain must keep the text as written")
	}
	rawSubject := p.header.Get("Subject")
	if !strings.HasPrefix(strings.ToLower(rawSubject), "=?utf-8?") {
		t.Errorf("a non-ASCII Subject is not RFC 2047 encoded: %q", rawSubject)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(rawSubject)
	if err != nil || subj != n.Subject {
		t.Errorf("Subject decodes to %q (%v), want %q", subj, err, n.Subject)
	}
	for _, part := range p.rawParts {
		for _, b := range part {
			if b >= 0x80 {
				t.Fatal("a part holds 8-bit bytes: quoted-printable should keep it 7-bit")
			}
		}
	}
}

func TestMessageIDStablePerNotice(t *testing.T) {
	n := testNotice()
	a, err := Build(n, testHeader(t, "one@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(n, testHeader(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	other := n
	other.ID = "v3-AAAAAAAAAAAAAAAA"
	c, err := Build(other, testHeader(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	ida, idb, idc := parseMessage(t, a).header.Get("Message-Id"), parseMessage(t, b).header.Get("Message-Id"), parseMessage(t, c).header.Get("Message-Id")
	if ida != idb {
		t.Errorf("same notice, different Message-Id: %s, %s", ida, idb)
	}
	if ida == idc {
		t.Errorf("different notices share Message-Id %s", ida)
	}
}

func TestMessageRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Notice, *Header)
		want   string
	}{
		{"no id", func(n *Notice, _ *Header) { n.ID = "" }, "notice id"},
		{"id with a slash", func(n *Notice, _ *Header) { n.ID = "../etc" }, "notice id"},
		{"no version", func(n *Notice, _ *Header) { n.Version = 0 }, "version"},
		{"no subject", func(n *Notice, _ *Header) { n.Subject = " " }, "subject is empty"},
		{"no body", func(n *Notice, _ *Header) { n.Body = "\n" }, "body is empty"},
		{"no time", func(n *Notice, _ *Header) { n.NotifiedAt = time.Time{} }, "notified time"},
		{"header injection", func(n *Notice, _ *Header) { n.Subject = "Hi\r\nBcc: all@example.org" }, "line break"},
		{"control in body", func(n *Notice, _ *Header) { n.Body = "a\x00b" }, "control character"},
		{"bad UTF-8", func(n *Notice, _ *Header) { n.Body = "a\xffb" }, "UTF-8"},
		{"no From", func(_ *Notice, h *Header) { h.From = nil }, "From"},
	}
	for _, tt := range tests {
		n, h := testNotice(), testHeader(t, "")
		tt.change(&n, &h)
		_, err := Build(n, h)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestParseBlocks(t *testing.T) {
	doc := parse("Intro line one\r\nline two\r\n\r\n- a\n  more a\n* b\nafter\n\n3) three\n4) four\n")
	if len(doc) != 4 {
		t.Fatalf("blocks = %+v", doc)
	}
	if strings.Join(doc[0].lines, "|") != "Intro line one|line two" {
		t.Errorf("paragraph = %q", doc[0].lines)
	}
	if doc[1].ordered || len(doc[1].items) != 2 || strings.Join(doc[1].items[0], "|") != "a|more a" {
		t.Errorf("bullets = %+v", doc[1])
	}
	if strings.Join(doc[2].lines, "|") != "after" {
		t.Errorf("paragraph after a list = %+v", doc[2])
	}
	if !doc[3].ordered || doc[3].start != 3 || len(doc[3].items) != 2 {
		t.Errorf("ordered = %+v", doc[3])
	}
}

func TestParseAddress(t *testing.T) {
	for _, bad := range []string{"", "nobody", "a@", "<>", "a@b\r\nBcc: c@d"} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
	a, err := ParseAddress("Mōhio <m@example.org>")
	if err != nil || a.Address != "m@example.org" || a.Name != "Mōhio" {
		t.Errorf("ParseAddress = %v, %v", a, err)
	}
}
