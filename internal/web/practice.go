package web

import "bytes"

// The practice page, /practice/: for general practices, with a practice
// token (scope impact.practice). It shows the practice's summary of an
// incident (GET /v1/incidents/{id}/practice: per cohort, the information
// pack), checks a register of patient ids read in the browser in batches
// (POST /v1/incidents/{id}/practice/patients:check) with progress, lists
// the practice's patients and offers them as a CSV download. Same
// standards as the patient page: embedded, no third-party assets, no
// inline script or style, API data through textContent only.
//
// Token hand-over from a practice portal (outside development mode):
// sessionStorage key "impact_practice_token", or once in the URL fragment
// "/practice/#token=<JWT>&incident=<id>", removed from the address bar at
// once.

// addPracticePage adds the practice page's assets, in mode ("dev" or
// "portal"), with add (see Handler).
func addPracticePage(add func(paths []string, name, contentType string, body []byte), mode string) {
	index := bytes.Replace(mustRead("practice/index.html"), []byte(`data-mode="portal"`), []byte(`data-mode="`+mode+`"`), 1)
	add([]string{"/practice/", "/practice", "/practice/index.html"}, "index.html", "text/html; charset=utf-8", index)
	add([]string{"/practice/app.js"}, "app.js", "text/javascript; charset=utf-8", mustRead("practice/app.js"))
	add([]string{"/practice/style.css"}, "style.css", "text/css; charset=utf-8", mustRead("practice/style.css"))
}
