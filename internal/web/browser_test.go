package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // Pacific/Auckland without the system's zoneinfo

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/testutil/browsertest"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/web"
)

// impactd is one in-process server (impacttest) with the web page in
// development mode.
type impactd struct {
	*impacttest.Env
	base string // http://host:port of the patient REST listener
}

func startImpactd(t *testing.T) *impactd {
	t.Helper()
	e := impacttest.Start(t, impacttest.Options{
		Config: server.Config{RequestTimeout: 2 * time.Second},
		Web:    web.Handler(web.Options{Dev: true}),
	})
	return &impactd{Env: e, base: "http://" + e.Addrs.HTTP}
}

// publish uploads spec and roster as the next version and publishes it.
func (d *impactd) publish(t *testing.T, spec []byte, roster string, expect uint64) uint64 {
	t.Helper()
	ctx := context.Background()
	info, err := d.Snapshots.Upload(ctx, snapshot.UploadRequest{
		Incident: demo.IncidentID, Spec: spec, Actor: "ops-test",
		Roster: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(roster)), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	// The operator accepts the corrections the review reports.
	nc, err := d.Snapshots.Corrections(ctx, demo.IncidentID, info.Version)
	if err != nil {
		t.Fatal(err)
	}
	req := snapshot.PublishRequest{Incident: demo.IncidentID, Version: info.Version, ExpectVisible: expect, AcceptCorrections: nc.Total, Actor: "ops-test"}
	if _, _, err := d.Snapshots.PublishReviewed(ctx, req); err != nil {
		t.Fatal(err)
	}
	return info.Version
}

// view is what the page shows for one incident, read from the DOM.
type view struct {
	Title       string   `json:"title"`
	Headline    string   `json:"headline"`
	Pending     string   `json:"pending"`
	Was         string   `json:"was"`
	Now         string   `json:"now"`
	Correction  string   `json:"correction"`
	Cohorts     []string `json:"cohorts"`
	NoticeDate  string   `json:"noticeDate"`
	Subject     string   `json:"subject"`
	Body        string   `json:"body"`
	BodySpacing string   `json:"bodySpacing"`
	Support     string   `json:"support"`
	Contact     string   `json:"contact"`
	Reference   string   `json:"reference"`
	// Layout: how far below the headline the support line starts, and
	// where it ends (px from the top of the page).
	SupportGap    float64 `json:"supportGap"`
	SupportBottom float64 `json:"supportBottom"`
	// Order lists the card's parts in document order (class names).
	Order []string `json:"order"`
}

type page struct {
	State       string `json:"state"`
	Message     string `json:"message"`
	Incidents   []view `json:"incidents"`
	ScrollWidth int    `json:"scrollWidth"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	URL         string `json:"url"`
}

const readPage = `(() => {
  const r = document.getElementById("result");
  const text = (el, sel) => { const n = el.querySelector(sel); return n ? n.textContent : ""; };
  const box = (el, sel) => { const n = el.querySelector(sel); return n ? n.getBoundingClientRect() : null; };
  return {
    state: r.dataset.state,
    message: text(r, ".message"),
    incidents: [...r.querySelectorAll(".incident")].map(c => {
      const h = box(c, ".headline"), s = box(c, ".support");
      return {
        title: text(c, "h2"),
        headline: text(c, ".headline"),
        pending: text(c, ".update-pending"),
        was: text(c, ".update-pending .was"),
        now: text(c, ".update-pending .now"),
        correction: text(c, ".correction"),
        cohorts: [...c.querySelectorAll(".cohorts li")].map(li => li.textContent),
        noticeDate: text(c, ".notice-date"),
        subject: text(c, ".notice-subject"),
        body: text(c, ".notice-body"),
        bodySpacing: c.querySelector(".notice-body") ? getComputedStyle(c.querySelector(".notice-body")).whiteSpace : "",
        support: text(c, ".support"),
        contact: text(c, ".support-contact"),
        reference: text(c, ".reference"),
        supportGap: h && s ? s.top - h.bottom : -1,
        supportBottom: s ? s.bottom + window.scrollY : -1,
        order: [...c.children].map(e => e.className || e.tagName.toLowerCase()),
      };
    }),
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
    height: window.innerHeight,
    url: location.href,
  };
})()`

// settled waits until the result region has an answer or an error.
var settled = chromedp.Poll[string](`["done", "error"].includes(document.getElementById("result").dataset.state) && document.getElementById("result").dataset.state`,
	chromedp.WithPollingTimeout(10*time.Second))

func read(t *testing.T, ctx context.Context) page {
	t.Helper()
	if _, err := chromedp.Run(ctx, settled); err != nil {
		t.Fatalf("result region never settled: %v", err)
	}
	p, err := chromedp.Run(ctx, chromedp.Evaluate[page](readPage))
	if err != nil {
		t.Fatal(err)
	}
	if p.ScrollWidth > p.Width {
		t.Errorf("horizontal scroll: content %dpx wide in a %dpx viewport", p.ScrollWidth, p.Width)
	}
	return p
}

// checkDev loads the page, types the token and submits it with Enter.
func checkDev(t *testing.T, ctx context.Context, base, tok string) page {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), tok+kb.Enter),
	); err != nil {
		t.Fatal(err)
	}
	return read(t, ctx)
}

func one(t *testing.T, who string, p page) view {
	t.Helper()
	if p.State != "done" || len(p.Incidents) != 1 {
		t.Fatalf("%s: page %+v, want one incident", who, p)
	}
	return p.Incidents[0]
}

// screenshot saves the page as DIR/name.png when IMPACT_SCREENSHOT_DIR is
// set (to look at the page; the test asserts the layout itself).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("IMPACT_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o600); err != nil {
		t.Fatal(err)
	}
}

// nzDate is how the page writes ts for a browser in (US) English: New
// Zealand English in New Zealand time, "1 December 2026 at 11:37 pm".
var nzDate = regexp.MustCompile(`^(\d{1,2}) ([A-Z][a-z]+) (\d{4})(?: at|,) \d{1,2}:\d{2}\s?[ap]m$`)

func checkNZDate(t *testing.T, got string, ts time.Time) {
	t.Helper()
	auckland, err := time.LoadLocation("Pacific/Auckland")
	if err != nil {
		t.Fatal(err)
	}
	local := ts.In(auckland)
	date := strings.TrimPrefix(got, "Our email of ")
	m := nzDate.FindStringSubmatch(date)
	if !strings.HasPrefix(got, "Our email of ") || m == nil || m[1] != fmt.Sprint(local.Day()) ||
		m[2] != local.Month().String() || m[3] != fmt.Sprint(local.Year()) {
		t.Fatalf("notice date %q, want New Zealand English in New Zealand time (%s)", got, local.Format("2 January 2006 at 3:04 pm"))
	}
}

// TestPatientPageInChromium loads the page from a running impactd in
// headless Chromium and checks, on a 360 px phone and on a desktop, what an
// affected, an update-pending, an under-review, a never-contacted
// not-affected and a corrected patient see; then the errors, the token
// hand-overs (portal and development), keyboard use, the date locale and
// that a refresh never goes back to an older version.
func TestPatientPageInChromium(t *testing.T) {
	chromium := browsertest.ChromiumPath(t)
	d := startImpactd(t)

	var specBuf bytes.Buffer
	if err := demo.WriteSpec(&specBuf); err != nil {
		t.Fatal(err)
	}
	spec := specBuf.Bytes()
	const (
		affected    = "patient-0000101" // northland, notified at v1, still affected
		pending     = "patient-0000102" // referrals, notified at v1, removed at v2, not written to again
		underReview = "patient-0000103"
		notAffected = "patient-0000104" // never in a roster, never contacted
		corrected   = "patient-0000105" // referrals, notified at v1, removed at v2 and told so
	)
	header := "subject_id,status,cohorts,practice_id\n"
	v1 := d.publish(t, spec, header+affected+",affected,northland,GP-01\n"+pending+",affected,referrals,GP-02\n"+
		underReview+",under_review,,GP-03\n"+corrected+",affected,referrals,GP-02\n", 0)
	claims := map[string]istatus.Claim{}
	claim := func(s, key string) {
		c, err := d.Status.Claim(context.Background(), demo.IncidentID, s, key)
		if err != nil || c.Action != istatus.ActionSend {
			t.Fatalf("claim %s: %+v %v", s, c, err)
		}
		claims[s] = c
	}
	for _, s := range []string{affected, pending, corrected} {
		claim(s, "wave1:"+s)
	}
	v2 := d.publish(t, spec, header+affected+",affected,northland,GP-01\n"+underReview+",under_review,,GP-03\n", v1)
	claim(corrected, "wave2:"+corrected) // the correction email

	// The portal: the page outside development mode, same origin as the API.
	// With lagging set, /v1/status answers as a replica one version
	// behind would.
	portalMux := http.NewServeMux()
	apiURL, _ := url.Parse(d.base)
	proxy := httputil.NewSingleHostReverseProxy(apiURL)
	var lagging atomic.Bool
	var atLeast atomic.Value
	atLeast.Store("")
	portalMux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query().Get("at_least_version"); q != "" {
			atLeast.Store(q)
		}
		if !lagging.Load() || r.URL.Path != "/v1/status" {
			proxy.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		older := regexp.MustCompile(`"version":\s*`+fmt.Sprint(v2)+`\b`).ReplaceAll(rec.Body.Bytes(), []byte(`"version":`+fmt.Sprint(v1)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(older)
	})
	portalMux.Handle("/", web.Handler(web.Options{}))
	portal := httptest.NewServer(portalMux)
	defer portal.Close()

	ctx, cancelTab := browsertest.Tab(t, chromium, 120*time.Second, chromedp.Flag("lang", "en-US"))

	// Collect what the page writes to the console: a CSP violation or an
	// uncaught exception fails the test.
	var (
		consoleMu sync.Mutex
		console   []string
		consoleWG sync.WaitGroup
	)
	messages := chromedp.Console(ctx)
	consoleWG.Add(1)
	go func() {
		defer consoleWG.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, fmt.Sprintf("%s %s: %s", m.Type, m.Source, m.Text))
			consoleMu.Unlock()
		}
	}()

	// The page shows the notice without the email's closing reference
	// paragraph: the reference has a line of its own.
	pageBody := func(c istatus.Claim) string {
		i := strings.LastIndex(c.Notice.Body, "\n\nReference: notice "+c.NoticeID)
		if i < 0 {
			t.Fatalf("the email body has no reference paragraph: %q", c.Notice.Body)
		}
		return c.Notice.Body[:i]
	}
	ref := func(first string, version uint64) string {
		return fmt.Sprintf("Reference for support: %s · %d", first, version)
	}
	// noJargon: what the page must never show a patient.
	noJargon := func(t *testing.T, who string, p page) {
		t.Helper()
		for _, v := range p.Incidents {
			all := strings.Join([]string{v.Headline, v.Pending, v.Correction, v.Support, v.Reference, v.NoticeDate, v.Body}, " ")
			for _, j := range []string{"Snapshot", "snapshot", "Notice written from", "version"} {
				if strings.Contains(all, j) {
					t.Errorf("%s: the page says %q: %q", who, j, all)
				}
			}
			if v.Reference == "" || strings.Count(strings.Join([]string{v.Headline, v.Pending, v.Correction, v.Support, v.NoticeDate, v.Reference}, " "), "Reference") != 1 {
				t.Errorf("%s: reference line %q", who, v.Reference)
			}
		}
	}

	for _, size := range []struct {
		name          string
		width, height int64
	}{{"phone", 360, 740}, {"desktop", 1280, 900}} {
		t.Run(size.name, func(t *testing.T) {
			if err := chromedp.Do(ctx, chromedp.EmulateViewport(size.width, size.height)); err != nil {
				t.Fatal(err)
			}
			// look shows who's page; seen checks what no view may show and
			// saves the screenshot.
			look := func(t *testing.T, who, subject string) (page, view) {
				p := checkDev(t, ctx, d.base, d.Token(t, subject))
				return p, one(t, who, p)
			}
			seen := func(t *testing.T, who string, p page) {
				noJargon(t, who, p)
				screenshot(t, ctx, size.name+"-"+strings.ReplaceAll(who, " ", "-"))
			}

			t.Run("affected: support right under the headline", func(t *testing.T) {
				p, v := look(t, "affected", affected)
				c := claims[affected]
				if v.Title != "Health Documents breach, December 2025" || v.Headline != "You are affected" || v.Pending != "" ||
					v.Correction != "" || v.Subject != c.Notice.Subject || v.Body != pageBody(c) || v.BodySpacing != "pre-wrap" ||
					v.Contact != c.Notice.SupportContact || !strings.Contains(v.Support, "support line for affected patients") {
					t.Fatalf("affected patient sees %+v", v)
				}
				want := []string{"Northland discharge summaries and referral letters" +
					"Information concerned: Discharge summary, Referral letter, NHI number, Contact details"}
				if fmt.Sprint(v.Cohorts) != fmt.Sprint(want) {
					t.Fatalf("cohorts %q", v.Cohorts)
				}
				if !strings.Contains(v.Body, "\n\nWhat was taken:") || !strings.Contains(c.Notice.SupportContact, "0800 000 011") {
					t.Fatalf("notice body lost its paragraphs or the support line: %q", v.Body)
				}
				// Directly under the headline, and on the first screen.
				if len(v.Order) < 3 || v.Order[1] != "headline" || v.Order[2] != "support" || v.SupportGap < 0 || v.SupportGap > 32 ||
					v.SupportBottom > float64(p.Height) {
					t.Fatalf("support line: order %v, %.0f px under the headline, ends at %.0f px of a %d px screen",
						v.Order, v.SupportGap, v.SupportBottom, p.Height)
				}
				if v.Reference != ref(c.NoticeID, v2) || strings.Count(v.Body+v.Reference, c.NoticeID) != 1 {
					t.Fatalf("reference %q, want %q once", v.Reference, ref(c.NoticeID, v2))
				}
				checkNZDate(t, v.NoticeDate, c.NotifiedAt)
				seen(t, "affected", p)
			})

			t.Run("update pending: the headline says the status changed", func(t *testing.T) {
				p, v := look(t, "pending", pending)
				c := claims[pending]
				// What the email said (affected, v1) stays, under a headline
				// that says it changed, with both statuses.
				if v.Headline != "Your status has changed since we last wrote to you" || v.Was != "affected" || v.Now != "not affected" ||
					!strings.Contains(v.Pending, "Our email said: affected. Now: not affected.") ||
					v.Subject != c.Notice.Subject || v.Body != pageBody(c) || v.Reference != ref(c.NoticeID, v2) || v.Correction != "" {
					t.Fatalf("update-pending patient sees %+v, email was %+v", v, c)
				}
				for _, contradicted := range []string{"You are affected", "You are not affected"} {
					if strings.Contains(v.Headline, contradicted) {
						t.Fatalf("headline %q", v.Headline)
					}
				}
				if len(v.Order) < 3 || v.Order[1] != "headline" || v.Order[2] != "update-pending" {
					t.Fatalf("order %v: the change must come right under the headline", v.Order)
				}
				seen(t, "pending", p)
			})

			t.Run("under review", func(t *testing.T) {
				p, v := look(t, "under review", underReview)
				if v.Headline != "We are still checking whether you are affected" || len(v.Cohorts) != 0 || v.Support != "" ||
					!strings.HasPrefix(v.Subject, "We are still checking") || v.Pending != "" || v.Correction != "" ||
					v.Reference != ref(demo.IncidentID, v2) || v.NoticeDate != "" {
					t.Fatalf("under-review patient sees %+v", v)
				}
				seen(t, "under review", p)
			})

			t.Run("not affected, never contacted", func(t *testing.T) {
				p, v := look(t, "not affected", notAffected)
				if v.Headline != "You are not affected" || len(v.Cohorts) != 0 || v.Support != "" || v.Pending != "" ||
					v.Correction != "" || v.NoticeDate != "" ||
					!strings.HasPrefix(v.Subject, "Your health information was not affected") ||
					strings.Contains(v.Body, "told you") || strings.Contains(v.Body, "earlier") ||
					v.Reference != ref(demo.IncidentID, v2) {
					t.Fatalf("never-contacted not-affected patient sees %+v", v)
				}
				seen(t, "not affected", p)
			})

			t.Run("not affected, corrected after an email", func(t *testing.T) {
				p, v := look(t, "corrected", corrected)
				c := claims[corrected]
				// The words for those told otherwise before are the spec's
				// correction notice, as the email said them.
				if v.Headline != "You are not affected" || v.Support != "" || v.Pending != "" || v.Correction != "" ||
					!strings.HasPrefix(v.Subject, "Correction: ") ||
					!strings.Contains(v.Body, "We wrote to you before that your health information might have been affected") ||
					!strings.Contains(v.Body, "This replaces our earlier message") ||
					v.Subject != c.Notice.Subject || v.Body != pageBody(c) || v.Reference != ref(c.NoticeID, v2) {
					t.Fatalf("corrected patient sees %+v", v)
				}
				checkNZDate(t, v.NoticeDate, c.NotifiedAt)
				seen(t, "corrected", p)
			})

			t.Run("bad token asks to sign in again", func(t *testing.T) {
				p := checkDev(t, ctx, d.base, d.Token(t, affected)+"x")
				if p.State != "error" || !strings.HasPrefix(p.Message, "Please sign in again") || len(p.Incidents) != 0 {
					t.Fatalf("bad token: %+v", p)
				}
				screenshot(t, ctx, size.name+"-bad-token")
			})
		})
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(360, 740)); err != nil {
		t.Fatal(err)
	}

	t.Run("keyboard only", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
		if focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.id`)); err != nil || focused != "token" {
			t.Fatalf("second Tab focuses %q (%v), want the token field after the skip link", focused, err)
		}
		if err := chromedp.Do(ctx, chromedp.KeyEvent(d.Token(t, affected)), chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
		if focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.id`)); err != nil || focused != "check" {
			t.Fatalf("Tab from the token field focuses %q (%v), want the button", focused, err)
		}
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Enter)); err != nil {
			t.Fatal(err)
		}
		if v := one(t, "keyboard", read(t, ctx)); v.Headline != "You are affected" {
			t.Fatalf("keyboard: %+v", v)
		}
	})

	t.Run("button clicked", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), d.Token(t, underReview)), chromedp.Click(chromedp.ID("check"))); err != nil {
			t.Fatal(err)
		}
		if v := one(t, "button", read(t, ctx)); v.Headline != "We are still checking whether you are affected" {
			t.Fatalf("button: %+v", v)
		}
	})

	t.Run("development mode takes #token= too", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(d.base+"/#token="+d.Token(t, affected))); err != nil {
			t.Fatal(err)
		}
		p := read(t, ctx)
		if v := one(t, "dev fragment", p); v.Headline != "You are affected" {
			t.Fatalf("dev fragment: %+v", v)
		}
		if p.URL != d.base+"/" {
			t.Fatalf("the token stays in the address bar: %q", p.URL)
		}
	})

	t.Run("dates follow the browser's language, in New Zealand time", func(t *testing.T) {
		if _, err := chromedp.Run(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome", AcceptLanguage: "de-DE"})
			return err
		})); err != nil {
			t.Fatal(err)
		}
		v := one(t, "de-DE", checkDev(t, ctx, d.base, d.Token(t, affected)))
		if _, err := chromedp.Run(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome", AcceptLanguage: "en-US"})
			return err
		})); err != nil {
			t.Fatal(err)
		}
		auckland, _ := time.LoadLocation("Pacific/Auckland")
		local := claims[affected].NotifiedAt.In(auckland)
		months := []string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"}
		want := fmt.Sprintf("%d. %s %d", local.Day(), months[local.Month()-1], local.Year())
		if !strings.HasPrefix(v.NoticeDate, "Our email of "+want) {
			t.Fatalf("German browser: %q, want the date as %q", v.NoticeDate, want)
		}
	})

	t.Run("portal hands over the token in the fragment", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(portal.URL+"/#token="+d.Token(t, notAffected))); err != nil {
			t.Fatal(err)
		}
		p := read(t, ctx)
		if v := one(t, "portal fragment", p); v.Headline != "You are not affected" {
			t.Fatalf("portal fragment: %+v", v)
		}
		if p.URL != portal.URL+"/" {
			t.Fatalf("the token stays in the address bar: %q", p.URL)
		}
		if visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById("dev-form").hidden`)); err != nil || visible {
			t.Fatalf("token field shown outside development mode (%v)", err)
		}
	})

	t.Run("portal hands over the token in sessionStorage", func(t *testing.T) {
		tok := d.Token(t, affected)
		if err := chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`sessionStorage.setItem("impact_token", %q)`, tok)),
			chromedp.Navigate(portal.URL+"/"),
		); err != nil {
			t.Fatal(err)
		}
		if v := one(t, "portal sessionStorage", read(t, ctx)); v.Headline != "You are affected" || v.Reference != ref(claims[affected].NoticeID, v2) {
			t.Fatalf("portal sessionStorage: %+v", v)
		}
	})

	t.Run("check again never goes back to an older version", func(t *testing.T) {
		lagging.Store(true)
		defer lagging.Store(false)
		if err := chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](`document.getElementById("result").dataset.state = "idle"`),
			chromedp.Click(chromedp.ID("refresh")),
		); err != nil {
			t.Fatal(err)
		}
		v := one(t, "check again", read(t, ctx))
		if v.Reference != ref(claims[affected].NoticeID, v2) || atLeast.Load() != fmt.Sprint(v2) {
			t.Fatalf("after a lagging answer the page shows %q (asked at_least_version=%q), want version %d",
				v.Reference, atLeast.Load(), v2)
		}
	})

	t.Run("store down: temporarily unavailable, never a status", func(t *testing.T) {
		_ = d.Store.Close()
		p := checkDev(t, ctx, d.base, d.Token(t, notAffected))
		if p.State != "error" || !strings.Contains(p.Message, "temporarily unavailable") || len(p.Incidents) != 0 {
			t.Fatalf("store down: %+v", p)
		}
		screenshot(t, ctx, "phone-unavailable")
	})

	cancelTab()
	consoleWG.Wait()
	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, m := range console {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, string(chromedp.ConsoleException)) {
			t.Errorf("browser console: %s", m)
		}
	}
	t.Logf("browser console: %d messages (expected: the 401, 503 and favicon responses)", len(console))
}
