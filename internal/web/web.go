// Package web serves the patient web page: a small static page, embedded in
// the binary, that calls the patient REST API (GET /v1/status) with the
// caller's bearer token and shows the status, the cohorts and the data they
// concern, the notice, the support contact (affected patients only), the
// reference for support and any pending update.
//
// The page loads nothing from third parties and has no inline script or
// style, so it is served under a strict Content-Security-Policy.
//
// Token hand-over from the portal (outside development mode): the portal
// either stores the patient's token in sessionStorage under the key
// "impact_token" before linking here, or passes it once in the URL fragment
// ("/#token=<JWT>"), which the page reads and removes from the address bar
// with history.replaceState. A fragment never reaches a server or its logs;
// a query parameter would, so the page never reads one. In development mode
// the page shows a token field, and also takes a "/#token=<JWT>" link.
//
// Dates are written in the browser's language unless that is English or US
// English, which get New Zealand English, and always in New Zealand time.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the policy every page response carries.
const ContentSecurityPolicy = "default-src 'self'; connect-src 'self'; img-src 'self'; style-src 'self'; " +
	"script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Options configure the page.
type Options struct {
	// Dev shows a token field, for use with tokens minted by
	// `impactctl dev token`. Outside development the page takes the token
	// from the portal (see the package documentation).
	Dev bool
}

type asset struct {
	name, contentType, etag string
	body                    []byte
}

// Handler returns the handler of the page: "/" (and "/index.html"),
// "/app.js", "/common.js" (helpers both pages share) and "/style.css", and
// the practice page under "/practice/"; every other path is 404 and every
// method but GET and HEAD is 405.
func Handler(opts Options) http.Handler {
	mode := "portal"
	if opts.Dev {
		mode = "dev"
	}
	index := bytes.Replace(mustRead("index.html"), []byte(`data-mode="portal"`), []byte(`data-mode="`+mode+`"`), 1)
	assets := map[string]asset{}
	add := func(paths []string, name, contentType string, body []byte) {
		sum := sha256.Sum256(body)
		a := asset{name: name, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: body}
		for _, p := range paths {
			assets[p] = a
		}
	}
	add([]string{"/", "/index.html"}, "index.html", "text/html; charset=utf-8", index)
	add([]string{"/app.js"}, "app.js", "text/javascript; charset=utf-8", mustRead("app.js"))
	add([]string{"/common.js"}, "common.js", "text/javascript; charset=utf-8", mustRead("common.js"))
	add([]string{"/style.css"}, "style.css", "text/css; charset=utf-8", mustRead("style.css"))
	addPracticePage(add, mode) // practice.go

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// The page holds no patient data (that comes from the API, which
		// is no-store): revalidate, so a new release is picked up at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}

func mustRead(name string) []byte {
	b, err := static.ReadFile("static/" + name)
	if err != nil {
		panic(fmt.Sprintf("web: embedded %s: %v", name, err)) // a build defect, not a runtime condition
	}
	return b
}
