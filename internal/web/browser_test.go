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
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
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
	if _, _, err := d.Snapshots.Publish(ctx, demo.IncidentID, info.Version, expect, "ops-test"); err != nil {
		t.Fatal(err)
	}
	return info.Version
}

// chromiumPath finds Debian's chromium. Without it the test is skipped,
// except in CI, where it must run.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI=true): .ci/run installs it")
	}
	t.Skip("chromium is not installed; apt-get install chromium to run the browser test")
	return ""
}

// view is what the page shows for one incident, read from the DOM.
type view struct {
	Title       string            `json:"title"`
	Headline    string            `json:"headline"`
	Pending     string            `json:"pending"`
	Cohorts     []string          `json:"cohorts"`
	Subject     string            `json:"subject"`
	Body        string            `json:"body"`
	BodySpacing string            `json:"bodySpacing"`
	Support     string            `json:"support"`
	Meta        map[string]string `json:"meta"`
}

type page struct {
	State       string `json:"state"`
	Message     string `json:"message"`
	Incidents   []view `json:"incidents"`
	ScrollWidth int    `json:"scrollWidth"`
	Width       int    `json:"width"`
	URL         string `json:"url"`
}

const readPage = `(() => {
  const r = document.getElementById("result");
  const text = (el, sel) => { const n = el.querySelector(sel); return n ? n.textContent : ""; };
  return {
    state: r.dataset.state,
    message: text(r, ".message"),
    incidents: [...r.querySelectorAll(".incident")].map(c => ({
      title: text(c, "h2"),
      headline: text(c, ".headline"),
      pending: text(c, ".update-pending"),
      cohorts: [...c.querySelectorAll(".cohorts li")].map(li => li.textContent),
      subject: text(c, ".notice-subject"),
      body: text(c, ".notice-body"),
      bodySpacing: c.querySelector(".notice-body") ? getComputedStyle(c.querySelector(".notice-body")).whiteSpace : "",
      support: text(c, ".support"),
      meta: Object.fromEntries([...c.querySelectorAll(".meta dt")].map(dt => [dt.textContent, dt.nextElementSibling.textContent])),
    })),
    scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth,
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

// TestPatientPageInChromium loads the page from a running impactd in
// headless Chromium and checks what an affected, an under-review, a
// not-affected and an update-pending patient see, the errors, the portal
// token hand-over, keyboard use and a 360px wide screen.
func TestPatientPageInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	d := startImpactd(t)

	var specBuf bytes.Buffer
	if err := demo.WriteSpec(&specBuf); err != nil {
		t.Fatal(err)
	}
	spec := specBuf.Bytes()
	const (
		affected    = "patient-0000101" // northland, notified at v1, still affected
		pending     = "patient-0000102" // referrals, notified at v1, removed at v2
		underReview = "patient-0000103"
		notAffected = "patient-0000104" // never in a roster
	)
	header := "subject_id,status,cohorts,practice_id\n"
	v1 := d.publish(t, spec, header+affected+",affected,northland,GP-01\n"+pending+",affected,referrals,GP-02\n"+underReview+",under_review,,GP-03\n", 0)
	claims := map[string]istatus.Claim{}
	for _, s := range []string{affected, pending} {
		c, err := d.Status.Claim(context.Background(), demo.IncidentID, s, "wave1:"+s)
		if err != nil || c.Action != istatus.ActionSend {
			t.Fatalf("claim %s: %+v %v", s, c, err)
		}
		claims[s] = c
	}
	v2 := d.publish(t, spec, header+affected+",affected,northland,GP-01\n"+underReview+",under_review,,GP-03\n", v1)

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

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

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
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(360, 740)); err != nil {
		t.Fatal(err)
	}

	t.Run("affected, keyboard only", func(t *testing.T) {
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
		v := one(t, "affected", read(t, ctx))
		c := claims[affected]
		want := view{
			Title:    "Health Documents breach, December 2025",
			Headline: "You are affected",
			Cohorts: []string{"Northland discharge summaries and referral letters" +
				"Information concerned: Discharge summary, Referral letter, NHI number, Contact details"},
			Subject: c.Notice.Subject, Body: c.Notice.Body, BodySpacing: "pre-wrap",
			Support: "Support for affected patients: " + c.Notice.SupportContact,
		}
		if v.Title != want.Title || v.Headline != want.Headline || v.Pending != "" || fmt.Sprint(v.Cohorts) != fmt.Sprint(want.Cohorts) ||
			v.Subject != want.Subject || v.Body != want.Body || v.BodySpacing != want.BodySpacing || v.Support != want.Support {
			t.Fatalf("affected patient sees\n%+v\nwant\n%+v", v, want)
		}
		if !strings.Contains(v.Body, "\n\nWhat was taken:") || !strings.Contains(c.Notice.SupportContact, "0800 000 011") {
			t.Fatalf("notice body lost its paragraphs or the support line: %q", v.Body)
		}
		if v.Meta["Snapshot version"] != fmt.Sprint(v2) || v.Meta["Notice"] != c.NoticeID ||
			v.Meta["Notice written from version"] != fmt.Sprint(v1) || v.Meta["Notified on"] == "" {
			t.Fatalf("affected patient's version and notice: %v (claim %s at v%d)", v.Meta, c.NoticeID, v1)
		}
	})

	t.Run("update pending", func(t *testing.T) {
		v := one(t, "pending", checkDev(t, ctx, d.base, d.Token(t, pending)))
		c := claims[pending]
		// The page says what the email said (affected, v1) and that an
		// update is pending with the visible status beside it.
		if v.Headline != "You are affected" || v.Subject != c.Notice.Subject || v.Body != c.Notice.Body ||
			v.Meta["Notice"] != c.NoticeID || v.Meta["Snapshot version"] != fmt.Sprint(v2) {
			t.Fatalf("update-pending patient sees %+v, email was %+v", v, c)
		}
		if !strings.Contains(v.Pending, "Update pending") || !strings.Contains(v.Pending, "Your status is now: not affected.") {
			t.Fatalf("update-pending note: %q", v.Pending)
		}
		if path := os.Getenv("IMPACT_SCREENSHOT"); path != "" {
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, png, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot of the update-pending page: %s", path)
		}
	})

	t.Run("under review, button clicked", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), d.Token(t, underReview)), chromedp.Click(chromedp.ID("check"))); err != nil {
			t.Fatal(err)
		}
		v := one(t, "under review", read(t, ctx))
		if v.Headline != "We are still checking whether you are affected" || len(v.Cohorts) != 0 || v.Support != "" ||
			!strings.HasPrefix(v.Subject, "We are still checking") || v.Meta["Notice"] != "" || v.Pending != "" {
			t.Fatalf("under-review patient sees %+v", v)
		}
	})

	t.Run("not affected", func(t *testing.T) {
		v := one(t, "not affected", checkDev(t, ctx, d.base, d.Token(t, notAffected)))
		if v.Headline != "You are not affected" || len(v.Cohorts) != 0 || v.Support != "" || v.Pending != "" ||
			!strings.HasPrefix(v.Subject, "Your health information was not affected") ||
			v.Meta["Snapshot version"] != fmt.Sprint(v2) || v.Meta["Notice"] != "" {
			t.Fatalf("not-affected patient sees %+v", v)
		}
	})

	t.Run("bad token asks to sign in again", func(t *testing.T) {
		p := checkDev(t, ctx, d.base, d.Token(t, affected)+"x")
		if p.State != "error" || !strings.HasPrefix(p.Message, "Please sign in again") || len(p.Incidents) != 0 {
			t.Fatalf("bad token: %+v", p)
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
		if v := one(t, "portal sessionStorage", read(t, ctx)); v.Headline != "You are affected" || v.Meta["Notice"] != claims[affected].NoticeID {
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
		if v.Meta["Snapshot version"] != fmt.Sprint(v2) || atLeast.Load() != fmt.Sprint(v2) {
			t.Fatalf("after a lagging answer the page shows version %s (asked at_least_version=%q), want %d",
				v.Meta["Snapshot version"], atLeast.Load(), v2)
		}
	})

	t.Run("store down: temporarily unavailable, never a status", func(t *testing.T) {
		_ = d.Store.Close()
		p := checkDev(t, ctx, d.base, d.Token(t, notAffected))
		if p.State != "error" || !strings.Contains(p.Message, "temporarily unavailable") || len(p.Incidents) != 0 {
			t.Fatalf("store down: %+v", p)
		}
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
