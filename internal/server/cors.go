package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsPolicy answers cross-origin requests on the patient REST listener for
// the configured origins only. The patient API is read-only (GET) and
// authenticates with a bearer token in the Authorization header, never a
// cookie, so credentials are never allowed.
type corsPolicy struct {
	origins map[string]bool
}

// corsMaxAge is how long (seconds) a browser may cache a preflight answer.
const corsMaxAge = "600"

// ParseCORSOrigins validates and normalises allowed origins: each is
// scheme://host[:port] (http or https, no path, query or user info); "*"
// and "null" are refused. Values may be comma-separated.
func ParseCORSOrigins(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, o := range strings.Split(v, ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				continue
			}
			n, err := normaliseOrigin(o)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

func normaliseOrigin(o string) (string, error) {
	if o == "*" || o == "null" {
		return "", fmt.Errorf("CORS origin %q is not allowed: list each origin", o)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("CORS origin %q must be scheme://host[:port] with scheme http or https", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

func newCORS(origins []string) *corsPolicy {
	if len(origins) == 0 {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		p.origins[strings.ToLower(o)] = true
	}
	return p
}

// allowedHeaders are the request headers a browser may send cross-origin.
var allowedHeaders = map[string]bool{"authorization": true, "content-type": true}

func (p *corsPolicy) wrap(next http.Handler) http.Handler {
	if p == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		allowed := p.origins[strings.ToLower(origin)]
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !allowed || !p.preflightOK(r) {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "GET")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Retry-After")
		}
		next.ServeHTTP(w, r)
	})
}

// preflightOK checks the method and headers a preflight asks for.
func (p *corsPolicy) preflightOK(r *http.Request) bool {
	if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodGet {
		return false
	}
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "" && !allowedHeaders[name] {
				return false
			}
		}
	}
	return true
}
