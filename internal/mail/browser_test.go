package mail_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gomail "github.com/emersion/go-message/mail"

	"github.com/impact-health/impact/internal/mail"
	"github.com/impact-health/impact/internal/testutil/browsertest"
)

// htmlPart returns the decoded text/html part of a message.
func htmlPart(t *testing.T, raw []byte) string {
	t.Helper()
	r, err := gomail.CreateReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := r.NextPart()
		if err != nil {
			t.Fatalf("no text/html part: %v", err)
		}
		if h, ok := p.Header.(*gomail.InlineHeader); ok {
			if ct, _, _ := h.ContentType(); ct == "text/html" {
				b, err := io.ReadAll(p.Body)
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
		}
	}
}

// TestHTMLPartReadsAt360px renders the HTML part in headless Chromium on a
// 360 px wide screen: the notice and the footer are there and visible, and
// nothing makes the page scroll sideways (long words wrap).
func TestHTMLPartReadsAt360px(t *testing.T) {
	chromium := browsertest.ChromiumPath(t)
	from, _ := mail.ParseAddress("Breach Notices <notices@health.example>")
	n := mail.Notice{
		ID: "v3-7KQ2M9XW4TABCDEFGH", Version: 3,
		Subject: "Your health information was affected by the Health Documents breach",
		Body: "Kia ora,\n\nWe are writing to tell you that some of your health information was taken in the Health Documents breach in December 2025.\n\n" +
			"What was taken: hospital discharge summaries and referral letters from your Northland general practice, written 6 to 8 years ago.\n\n" +
			"What you can do:\n- be careful with unexpected calls, texts or emails that mention your health care\n- we will never ask for your password or for payment\n\n" +
			"Quote this reference if you call: MMH2025BREACHREFERENCE0000000000000001234567890ABCDEFGHIJ\n\n" +
			"Reference: notice v3-7KQ2M9XW4TABCDEFGH, snapshot version 3.",
		SupportContact: "0800 000 011 (Northland breach support line, 8am-8pm, 7 days)",
		NotifiedAt:     time.Date(2026, 1, 12, 9, 30, 0, 0, time.UTC),
	}
	raw, err := mail.Build(n, mail.Header{From: from})
	if err != nil {
		t.Fatal(err)
	}
	page := htmlPart(t, raw)
	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The browser asks for /favicon.ico by itself; anything else would
		// come from the page.
		if r.URL.Path != "/favicon.ico" {
			mu.Lock()
			requests = append(requests, r.URL.Path)
			mu.Unlock()
		}
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	defer srv.Close()

	ctx, _ := browsertest.Tab(t, chromium, 60*time.Second)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(360, 740), chromedp.Navigate(srv.URL+"/"), chromedp.WaitReady("body")); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Kia ora,",
		"some of your health information was taken in the Health Documents breach",
		"we will never ask for your password or for payment",
		"Notice v3-7KQ2M9XW4TABCDEFGH, snapshot version 3.",
		"Support: 0800 000 011",
		mail.CheckStatusLine,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page lacks %q; it reads:\n%s", want, text)
		}
	}
	type layout struct {
		ScrollWidth, InnerWidth, Height   float64
		Color, Background, FontSize       string
		Links, Images, Scripts, ListItems float64
	}
	l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](`(() => {
		const p = document.querySelector('p');
		const cs = getComputedStyle(p);
		return {
			ScrollWidth: document.documentElement.scrollWidth, InnerWidth: window.innerWidth,
			Height: document.body.getBoundingClientRect().height,
			Color: cs.color, Background: getComputedStyle(document.body).backgroundColor, FontSize: cs.fontSize,
			Links: document.links.length, Images: document.images.length, Scripts: document.scripts.length,
			ListItems: document.querySelectorAll('li').length,
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if l.InnerWidth != 360 || l.ScrollWidth > l.InnerWidth {
		t.Errorf("at %v px the page is %v px wide: it scrolls sideways", l.InnerWidth, l.ScrollWidth)
	}
	if l.Height < 400 {
		t.Errorf("the page is %v px high: blank or collapsed", l.Height)
	}
	if l.Color == l.Background || l.Color == "" {
		t.Errorf("text colour %q on background %q", l.Color, l.Background)
	}
	if l.FontSize != "16px" {
		t.Errorf("body text is %s, want 16px", l.FontSize)
	}
	if l.Links != 0 || l.Images != 0 || l.Scripts != 0 || l.ListItems != 2 {
		t.Errorf("links %v, images %v, scripts %v, list items %v", l.Links, l.Images, l.Scripts, l.ListItems)
	}
	mu.Lock()
	if len(requests) != 1 {
		t.Errorf("requests %v, want only the page itself (no images, fonts or tracking)", requests)
	}
	mu.Unlock()
	if path := os.Getenv("IMPACT_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			os.WriteFile(path, png, 0o600)
			t.Logf("screenshot: %s", path)
		}
	}
}
