package web_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/impact-health/impact/internal/demo"
)

const practiceSpec = `incident:
  id: mmh-2025-12
  title: Health Documents breach, December 2025
cohorts:
  - id: northland
    title: Northland discharge summaries
    data_categories: [discharge_summary, nhi_number]
    support_contact: "0800 000 011"
    notice: {subject: Your health information was affected, body: Some discharge summaries were taken.}
    practice_guidance: Discharge summaries 2017-2019; refer callers to 0800 000 011
  - id: referrals
    title: Referral records
    data_categories: [referral_letter]
    support_contact: "0800 000 012"
    notice: {subject: Your referral records were affected, body: Some referral records were taken.}
under_review_notice: {subject: We are still checking, body: We are still checking.}
not_affected_notice: {subject: You are not affected, body: Your information was not affected.}
practice_notice:
  subject: Some of your patients were affected
  body: |
    Patients may call you about the breach.

    Refer them to the support line of their cohort.
`

type practiceView struct {
	Summary   string     `json:"summary"`
	Headline  string     `json:"headline"`
	Cohorts   [][]string `json:"cohorts"`
	Guidance  []string   `json:"guidance"`
	Pack      string     `json:"pack"`
	Results   string     `json:"results"`
	Message   string     `json:"message"`
	Rows      [][]string `json:"rows"`
	Progress  string     `json:"progress"`
	Download  bool       `json:"download"`
	Scroll    int        `json:"scroll"`
	Width     int        `json:"width"`
	SumError  string     `json:"sumError"`
	ResultErr string     `json:"resultErr"`
}

const readPractice = `(() => {
  const s = document.getElementById("summary"), r = document.getElementById("results");
  const text = (el, sel) => { const n = el.querySelector(sel); return n ? n.textContent : ""; };
  const cells = tr => [...tr.children].map(c => c.textContent);
  return {
    summary: s.dataset.state,
    headline: text(s, ".headline"),
    cohorts: [...s.querySelectorAll("tr.cohort, tr.totals")].map(cells),
    guidance: [...s.querySelectorAll(".practice-guidance")].map(n => n.textContent),
    pack: text(s, ".pack"),
    results: r.dataset.state,
    message: text(r, ".message"),
    rows: [...r.querySelectorAll("tr.patient")].map(cells),
    progress: document.getElementById("progress-text").textContent,
    download: !document.getElementById("download").hidden,
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
    sumError: text(s, ".error"),
    resultErr: text(r, ".error"),
  };
})()`

func waitState(t *testing.T, ctx context.Context, region string) {
	t.Helper()
	js := fmt.Sprintf(`["done", "error"].includes(document.getElementById(%q).dataset.state) && document.getElementById(%q).dataset.state`, region, region)
	if _, err := chromedp.Run(ctx, chromedp.Poll[string](js, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("%s never settled: %v", region, err)
	}
}

func readPracticePage(t *testing.T, ctx context.Context) practiceView {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[practiceView](readPractice))
	if err != nil {
		t.Fatal(err)
	}
	if v.Scroll > v.Width {
		t.Errorf("horizontal scroll: content %dpx wide in a %dpx viewport", v.Scroll, v.Width)
	}
	return v
}

// signIn loads the practice page, types the token and the incident and
// submits, then waits for the summary.
func signIn(t *testing.T, ctx context.Context, base, tok string) practiceView {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/practice/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), tok),
		chromedp.SendKeys(chromedp.ID("incident"), demo.IncidentID),
		chromedp.Click(chromedp.ID("show")),
	); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, "summary")
	return readPracticePage(t, ctx)
}

func uploadRegister(t *testing.T, ctx context.Context, path string) practiceView {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("register-file")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("results").dataset.state = "idle"`),
		chromedp.SetUploadFiles(chromedp.ID("register-file"), []string{path}),
	); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, "results")
	return readPracticePage(t, ctx)
}

// TestPracticePageInChromium: a practice's summary with the information
// pack, a register mixing its own, other practices' and unknown ids checked
// in batches, the results and the CSV download, a bad token and a store
// outage, on a 360px wide screen, in headless Chromium.
func TestPracticePageInChromium(t *testing.T) {
	b := newBrowser(t, 90*time.Second)
	d := startImpactd(t)
	header := "subject_id,status,cohorts,practice_id\n"
	roster := header +
		"own-1,affected,northland,PR001\n" + // notified, then corrected
		"own-2,under_review,,PR001\n" +
		"own-3,affected,northland;referrals,PR001\n" + // notified
		"foreign-1,affected,northland,PR002\n" +
		"foreign-2,affected,referrals,PR002\n"
	v1 := d.publish(t, []byte(practiceSpec), roster, 0)
	for _, s := range []string{"own-1", "own-3", "foreign-1"} {
		if _, err := d.Status.Claim(context.Background(), demo.IncidentID, s, "wave1:"+s); err != nil {
			t.Fatal(err)
		}
	}
	d.publish(t, []byte(practiceSpec), strings.Replace(roster, "own-1,affected,northland,PR001\n", "", 1), v1)
	tok := d.PracticeToken(t, "dr-smith", "PR001")

	if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(360, 740)); err != nil {
		t.Fatal(err)
	}

	v := signIn(t, b.ctx, d.base, tok)
	if v.Summary != "done" || v.Headline != "Your practice is affected: 2 patients" {
		t.Fatalf("summary: %+v", v)
	}
	// Cohort, affected, under review, notified, due. own-1 is no longer in
	// the roster (a correction is due); own-3 is notified.
	want := [][]string{
		{"Northland discharge summaries" + "Information concerned: Discharge summary, NHI number" + "Discharge summaries 2017-2019; refer callers to 0800 000 011", "1", "0", "1", "0"},
		{"Referral records" + "Information concerned: Referral letter", "1", "0", "1", "0"},
		{"All cohorts (each patient once)", "1", "1", "1", "2"},
	}
	if fmt.Sprint(v.Cohorts) != fmt.Sprint(want) {
		t.Fatalf("cohort table\n%q\nwant\n%q", v.Cohorts, want)
	}
	if !strings.Contains(v.Pack, "Some of your patients were affected") || !strings.Contains(v.Pack, "Refer them to the support line") {
		t.Fatalf("information pack: %q", v.Pack)
	}

	// The register: own, foreign and unknown ids, a header, a duplicate and
	// an empty line, 2,500 lines (three batches).
	var reg strings.Builder
	reg.WriteString("subject_id\r\nforeign-1\r\nown-2\r\n\r\nown-1\r\n\"own-3\"\r\nown-2\r\nforeign-2\r\n")
	for i := 0; i < 2500; i++ {
		fmt.Fprintf(&reg, "unknown-%d\r\n", i)
	}
	path := filepath.Join(t.TempDir(), "register.csv")
	if err := os.WriteFile(path, []byte(reg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	v = uploadRegister(t, b.ctx, path)
	if v.Results != "done" || len(v.Rows) != 3 || v.Progress != "Checked 2505 of 2505 ids" || !v.Download {
		t.Fatalf("register results: %+v", v)
	}
	if !strings.HasPrefix(v.Message, "3 of the 2505 ids checked are your patients") || !strings.Contains(v.Message, "1 lines were left out") {
		t.Fatalf("results summary: %q", v.Message)
	}
	got := map[string][]string{}
	for _, r := range v.Rows {
		got[r[0]] = r
	}
	if r := got["own-1"]; r == nil || r[1] != "Affected" || !strings.HasPrefix(r[3], "Notice v1-") || r[4] != "Pending: now not affected" {
		t.Errorf("own-1 (notified, then corrected): %q", r)
	}
	if r := got["own-2"]; r == nil || r[1] != "Under review" || r[3] != "Not yet notified" || r[4] != "" {
		t.Errorf("own-2: %q", r)
	}
	if r := got["own-3"]; r == nil || r[2] != "Northland discharge summaries; Referral records" || !strings.HasPrefix(r[3], "Notice v1-") {
		t.Errorf("own-3: %q", r)
	}
	if got["foreign-1"] != nil || got["foreign-2"] != nil {
		t.Errorf("another practice's patients listed: %q", v.Rows)
	}

	// The download, as the browser saves it.
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.ID("download"))); err != nil {
		t.Fatal(err)
	}
	var csv string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(filepath.Join(dir, "affected-patients.csv"))
		if err == nil && len(data) > 0 {
			csv = string(data)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download: %v", err)
		}
	}
	lines := strings.Split(strings.TrimSpace(csv), "\r\n")
	if len(lines) != 4 || lines[0] != "subject_id,status,cohorts,notified_version,notified_at,notice_id,update_pending,visible_status" {
		t.Fatalf("download:\n%s", csv)
	}
	a1, _ := d.Status.Status(context.Background(), demo.IncidentID, "own-1", 0)
	wantLine := fmt.Sprintf("own-1,AFFECTED,northland,1,%s,%s,true,NOT_AFFECTED", a1.NotifiedAt.Format("2006-01-02T15:04:05.000Z"), a1.NoticeID)
	if !strings.Contains(csv, wantLine) || !strings.Contains(csv, "own-2,UNDER_REVIEW,,,,,false,UNDER_REVIEW") || strings.Contains(csv, "foreign") {
		t.Fatalf("download:\n%s\nwant the line %s", csv, wantLine)
	}

	// A bad token: sign in again, nothing shown.
	v = signIn(t, b.ctx, d.base, tok+"x")
	if v.Summary != "error" || !strings.HasPrefix(v.SumError, "Please sign in again") || v.Headline != "" {
		t.Fatalf("bad token: %+v", v)
	}
	// A patient's token: not a practice.
	v = signIn(t, b.ctx, d.base, d.Token(t, "own-2"))
	if v.Summary != "error" || !strings.Contains(v.SumError, "for general practices") {
		t.Fatalf("patient token: %+v", v)
	}

	// Store down while checking: the check stops, no list, no download.
	if v = signIn(t, b.ctx, d.base, tok); v.Summary != "done" {
		t.Fatalf("sign in again: %+v", v)
	}
	_ = d.Store.Close()
	v = uploadRegister(t, b.ctx, path)
	if v.Results != "error" || !strings.Contains(v.ResultErr, "no list is shown") || !strings.Contains(v.ResultErr, "temporarily unavailable") ||
		len(v.Rows) != 0 || v.Download {
		t.Fatalf("store down: %+v", v)
	}
	b.checkConsole(t)
}
