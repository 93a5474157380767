package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHandlerRoutes(t *testing.T) {
	h := Handler(Options{})
	for _, tc := range []struct {
		method, path string
		code         int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<html lang="en-NZ">`},
		{"GET", "/index.html", 200, "text/html; charset=utf-8", `id="result"`},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8", `"/v1/status"`},
		{"GET", "/style.css", 200, "text/css; charset=utf-8", ".notice-body"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/static/app.js", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"GET", "/favicon.ico", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"DELETE", "/app.js", 405, "", ""},
	} {
		resp, body := get(t, h, tc.method, tc.path, nil)
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
			continue
		}
		if tc.code != 200 {
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tc.contentType {
			t.Errorf("%s %s: Content-Type %q, want %q", tc.method, tc.path, got, tc.contentType)
		}
		if !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.contains)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": ContentSecurityPolicy,
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, k, got, want)
			}
		}
	}
}

func TestRevalidation(t *testing.T) {
	h := Handler(Options{})
	resp, _ := get(t, h, "GET", "/app.js", nil)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if resp, _ := get(t, h, "GET", "/app.js", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("matching If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp, _ := get(t, h, "GET", "/style.css", map[string]string{"If-None-Match": etag}); resp.StatusCode != 200 {
		t.Fatalf("another file's ETag: %d, want 200", resp.StatusCode)
	}
}

func TestDevMode(t *testing.T) {
	for _, tc := range []struct {
		dev  bool
		mode string
	}{{false, `data-mode="portal"`}, {true, `data-mode="dev"`}} {
		_, body := get(t, Handler(Options{Dev: tc.dev}), "GET", "/", nil)
		if !strings.Contains(body, tc.mode) {
			t.Errorf("Dev=%v: page lacks %s", tc.dev, tc.mode)
		}
	}
}

// TestStrictCSPCompatible: the strict policy blocks inline scripts, inline
// event handlers, inline styles and third-party assets, so the page must not
// use any; and API data must never be parsed as HTML.
func TestStrictCSPCompatible(t *testing.T) {
	index := string(mustRead("index.html"))
	for _, tc := range []struct {
		what string
		re   *regexp.Regexp
	}{
		{"inline script", regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)},
		{"inline event handler", regexp.MustCompile(`(?i)\son[a-z]+\s*=`)},
		{"inline style attribute", regexp.MustCompile(`(?i)\sstyle\s*=`)},
		{"style element", regexp.MustCompile(`(?i)<style`)},
		{"absolute URL", regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)},
	} {
		if m := tc.re.FindString(index); m != "" {
			t.Errorf("index.html has an %s: %q", tc.what, m)
		}
	}
	for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAllString(index, -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Errorf("index.html has a script without src: %q", tag)
		}
	}
	js := string(mustRead("app.js"))
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "console.", "location.search"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	if !strings.Contains(index, `aria-live="polite"`) || !strings.Contains(index, `<label for="token">`) {
		t.Error("index.html lost its live region or its token label")
	}
}
