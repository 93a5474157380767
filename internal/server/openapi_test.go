package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

// servedDoc is one listener's OpenAPI document as it serves it: the
// OpenAPI 2 text and its OpenAPI 3 conversion, made strict (an object
// schema allows no property it does not list) so that a field the document
// does not have fails validation.
type servedDoc struct {
	name string
	addr string
	v2   *openapi2.T
	v3   *openapi3.T
	// covered counts, per "METHOD template", the answers validated: the
	// test requires a 2xx and an error for every operation.
	ok, failed map[string]int
}

func fetchDoc(t *testing.T, e *env, name, addr string) *servedDoc {
	t.Helper()
	code, hdr, body := e.rest("GET", addr, "/openapi.json", "", "")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("%s /openapi.json: %d %s", name, code, hdr.Get("Content-Type"))
	}
	var v2 openapi2.T
	if err := json.Unmarshal(body, &v2); err != nil {
		t.Fatalf("%s document: %v", name, err)
	}
	v3, err := openapi2conv.ToV3(&v2)
	if err != nil {
		t.Fatalf("%s document to OpenAPI 3: %v", name, err)
	}
	if err := v3.Validate(context.Background()); err != nil {
		t.Fatalf("%s document is not valid OpenAPI: %v", name, err)
	}
	for _, s := range v3.Components.Schemas {
		strict(s.Value, map[*openapi3.Schema]bool{})
	}
	return &servedDoc{name: name, addr: addr, v2: &v2, v3: v3, ok: map[string]int{}, failed: map[string]int{}}
}

// strict forbids properties an object schema does not list (protobufAny,
// which declares additionalProperties, keeps them).
func strict(s *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		no := false
		s.AdditionalProperties.Has = &no
	}
	for _, p := range s.Properties {
		strict(p.Value, seen)
	}
	if s.Items != nil {
		strict(s.Items.Value, seen)
	}
}

// templateOf finds the document's path template and operation for a
// request path, by the same rule the gateway routes: {param} is one
// segment, a :verb suffix is literal.
func (d *servedDoc) templateOf(method, path string) (string, *openapi3.PathItem, *openapi3.Operation, map[string]string) {
	for tmpl, item := range d.v3.Paths.Map() {
		names := regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(tmpl, -1)
		parts := regexp.MustCompile(`\{[^}]+\}`).Split(tmpl, -1)
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		m := regexp.MustCompile("^" + strings.Join(parts, "([^/]+)") + "$").FindStringSubmatch(path)
		if m == nil {
			continue
		}
		params := map[string]string{}
		for i, n := range names {
			params[n[1]] = m[i+1]
		}
		return tmpl, item, item.GetOperation(method), params
	}
	return "", nil, nil, nil
}

// check makes one request and validates the answer against the document:
// status, headers and body must be what the operation documents. It returns
// the status and body.
func (d *servedDoc) check(t *testing.T, e *env, method, path, tok, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	code, h, b := call(t, http.DefaultClient, method, "http://"+d.addr+path, tok, body, hdr...)
	urlPath, _, _ := strings.Cut(path, "?")
	tmpl, item, op, params := d.templateOf(method, urlPath)
	if op == nil {
		t.Fatalf("%s %s %s: not in the %s document (answered %d %s)", d.name, method, path, d.name, code, b)
	}
	req, err := http.NewRequest(method, "http://"+d.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      &routers.Route{Spec: d.v3, Path: tmpl, PathItem: item, Method: method, Operation: op},
		Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	rerr := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 code,
		Header:                 h,
		Body:                   io.NopCloser(bytes.NewReader(b)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
	if rerr != nil {
		t.Fatalf("%s %s %s: answer %d %s does not match the document: %v", d.name, method, path, code, b, rerr)
	}
	key := method + " " + tmpl
	if code < 300 {
		d.ok[key]++
	} else {
		d.failed[key]++
		var st struct {
			Code    int               `json:"code"`
			Message string            `json:"message"`
			Details []json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal(b, &st); err != nil || st.Code == 0 || st.Message == "" || st.Details == nil {
			t.Fatalf("%s %s: error body %s is not {code, message, details}", method, path, b)
		}
	}
	return code, h, b
}

// requestValid reports whether the document accepts a request (its
// parameters' types and ranges).
func (d *servedDoc) requestValid(method, path string) error {
	urlPath, _, _ := strings.Cut(path, "?")
	tmpl, item, op, params := d.templateOf(method, urlPath)
	if op == nil {
		return fmt.Errorf("no operation")
	}
	req, _ := http.NewRequest(method, "http://"+d.addr+path, nil)
	req.Header.Set("Authorization", "Bearer x")
	return openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params,
		Route:   &routers.Route{Spec: d.v3, Path: tmpl, PathItem: item, Method: method, Operation: op},
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
}

// operations lists "METHOD template" of every operation of the document.
func (d *servedDoc) operations() []string {
	var out []string
	for tmpl, item := range d.v3.Paths.Map() {
		for m := range item.Operations() {
			out = append(out, m+" "+tmpl)
		}
	}
	slices.Sort(out)
	return out
}

// lint checks what a client (or a validating proxy) needs from the
// document beyond its schema validity: a bearer scheme required by every
// operation, an error answer on every operation, and every uint32 field
// of the API with its real range.
func (d *servedDoc) lint(t *testing.T) {
	t.Helper()
	sd, ok := d.v2.SecurityDefinitions["bearer"]
	if !ok || sd.Type != "apiKey" || sd.In != "header" || sd.Name != "Authorization" {
		t.Fatalf("%s: no bearer security scheme: %+v", d.name, d.v2.SecurityDefinitions)
	}
	for _, op := range d.operations() {
		method, tmpl, _ := strings.Cut(op, " ")
		o := d.v3.Paths.Value(tmpl).GetOperation(method)
		sec := d.v3.Security
		if o.Security != nil {
			sec = *o.Security
		}
		if len(sec) == 0 || sec[0]["bearer"] == nil {
			t.Errorf("%s %s: no security requirement", d.name, op)
		}
		if o.Responses.Default() == nil {
			t.Errorf("%s %s: no default (error) response", d.name, op)
		}
		for _, p := range o.Parameters {
			if s := p.Value.Schema; s != nil && s.Value.Format == "uint32" && (s.Value.Max == nil || *s.Value.Max != 1<<32-1 || s.Value.Min == nil) {
				t.Errorf("%s %s parameter %s: uint32 without its range", d.name, op, p.Value.Name)
			}
		}
	}
	// Every uint32 field of a documented message has its range (listed in
	// proto/impact/v1/impact_openapi.yaml).
	for name, ref := range d.v3.Components.Schemas {
		desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("impact.v1." + strings.TrimPrefix(name, "v1")))
		if err != nil {
			continue
		}
		md, ok := desc.(protoreflect.MessageDescriptor)
		if !ok {
			continue
		}
		for i := 0; i < md.Fields().Len(); i++ {
			f := md.Fields().Get(i)
			if f.Kind() != protoreflect.Uint32Kind {
				continue
			}
			p := ref.Value.Properties[string(f.Name())]
			if p == nil {
				continue // a path parameter, not in the body schema
			}
			s := p.Value
			if f.IsList() {
				s = s.Items.Value
			}
			if s.Max == nil || *s.Max != 1<<32-1 {
				t.Errorf("%s: %s.%s is uint32 but documented without maximum 4294967295: add it to proto/impact/v1/impact_openapi.yaml",
					d.name, name, f.Name())
			}
		}
	}
}

// TestRESTMatchesOpenAPI calls every route of both REST listeners, answers
// and errors, and validates each answer against the document the listener
// serves; it lints both documents and checks that each lists exactly what
// its listener serves.
func TestRESTMatchesOpenAPI(t *testing.T) {
	e, spec := startPublished(t)
	patient := fetchDoc(t, e, "patient", e.Addrs.HTTP)
	ops := fetchDoc(t, e, "ops", e.Addrs.AdminHTTP)
	patient.lint(t)
	ops.lint(t)
	inc := "/v1/incidents/" + demo.IncidentID

	// Each listener documents its own routes only.
	for _, op := range patient.operations() {
		if strings.Contains(op, "snapshots") || strings.Contains(op, "notices") || strings.Contains(op, "audit") || strings.Contains(op, "subjects") {
			t.Errorf("patient document lists an ops route: %s", op)
		}
	}
	for _, op := range ops.operations() {
		if strings.HasSuffix(op, "/status") {
			t.Errorf("ops document lists a patient route: %s", op)
		}
	}
	// A path of the other listener is not served here.
	if code, _, _ := e.rest("GET", e.Addrs.AdminHTTP, "/v1/status", e.adminTk, ""); code != 404 {
		t.Errorf("GET /v1/status on the ops listener: %d, want 404", code)
	}

	// Patient answers: notified, never notified, not affected, the list.
	claim := `{"subject_id":"` + sid(1) + `","idempotency_key":"k-1"}`
	if code, _, b := ops.check(t, e, "POST", inc+"/notices:claim", e.adminTk, claim); code != 200 {
		t.Fatalf("claim: %d %s", code, b)
	}
	for _, s := range []int{1, 2, 38} {
		tok := e.Token(t, sid(s))
		if code, _, b := patient.check(t, e, "GET", inc+"/status", tok, ""); code != 200 {
			t.Fatalf("%s status: %d %s", sid(s), code, b)
		}
		if code, _, b := patient.check(t, e, "GET", "/v1/status", tok, ""); code != 200 {
			t.Fatalf("%s list: %d %s", sid(s), code, b)
		}
	}
	tok := e.Token(t, sid(1))
	if code, _, _ := patient.check(t, e, "GET", inc+"/status?at_least_version=1", tok, ""); code != 200 {
		t.Fatalf("at_least_version=1: %d", code)
	}
	// A never-notified answer has no notified_at: not null, absent.
	_, _, b := patient.check(t, e, "GET", inc+"/status", e.Token(t, sid(2)), "")
	if bytes.Contains(b, []byte("null")) || bytes.Contains(b, []byte("notified_at")) {
		t.Fatalf("never-notified answer: %s", b)
	}

	// Patient errors: no token, bad values (after authentication), range,
	// unknown incident, malformed id.
	for _, p := range []string{"/v1/status", inc + "/status", inc + "/status?at_least_version=abc'%3Cx%3E"} {
		if code, h, b := patient.check(t, e, "GET", p, "", ""); code != 401 || h.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s without a token: %d %s", p, code, b)
		}
	}
	for _, q := range []string{"abc'%3Cx%3E", "4294967296", "-1", "1.5"} {
		code, _, b := patient.check(t, e, "GET", inc+"/status?at_least_version="+q, tok, "")
		if code != 400 || bytes.Contains(b, []byte("abc")) || bytes.Contains(b, []byte("strconv")) ||
			bytes.Contains(b, []byte("parsing")) || bytes.Contains(b, []byte("4294967296")) {
			t.Fatalf("at_least_version=%s: %d %s", q, code, b)
		}
		if patient.requestValid("GET", inc+"/status?at_least_version="+q) == nil {
			t.Errorf("the document accepts at_least_version=%s, which the server refuses", q)
		}
	}
	if err := patient.requestValid("GET", inc+"/status?at_least_version=4294967295"); err != nil {
		t.Errorf("the document refuses at_least_version=4294967295: %v", err)
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{inc + "/status?at_least_version=99", 400},
		{"/v1/incidents/unknown-incident/status", 404},
		{"/v1/incidents/BAD_ID/status", 400},
	} {
		if code, _, b := patient.check(t, e, "GET", c.path, tok, ""); code != c.want {
			t.Fatalf("%s: %d %s, want %d", c.path, code, b, c.want)
		}
	}
	// Wrong methods: 405 with Allow, never the GET answer (no path-length
	// fallback for a form POST).
	for _, m := range []struct{ method, path, ctype string }{
		{"POST", "/v1/status", "application/x-www-form-urlencoded"},
		{"PUT", "/v1/status", ""},
		{"DELETE", inc + "/status", ""},
		{"HEAD", inc + "/status", ""},
		{"OPTIONS", "/v1/status", ""},
	} {
		hdr := []string{}
		if m.ctype != "" {
			hdr = append(hdr, "Content-Type", m.ctype)
		}
		code, h, b := call(t, http.DefaultClient, m.method, "http://"+e.Addrs.HTTP+m.path, tok, "a=b", hdr...)
		if code != 405 || h.Get("Allow") != "GET" || bytes.Contains(b, []byte("statuses")) {
			t.Fatalf("%s %s: %d Allow %q %s", m.method, m.path, code, h.Get("Allow"), b)
		}
	}
	if code, h, _ := call(t, http.DefaultClient, "GET", "http://"+e.Addrs.AdminHTTP+inc+"/snapshots:gc", e.adminTk, ""); code != 405 || h.Get("Allow") != "POST" {
		t.Fatalf("GET :gc: %d Allow %q", code, h.Get("Allow"))
	}
	if code, _, b := call(t, http.DefaultClient, "GET", "http://"+e.Addrs.HTTP+"/v1/nothing", tok, ""); code != 404 || !bytes.Contains(b, []byte(`"details"`)) {
		t.Fatalf("unknown path: %d %s", code, b)
	}

	// Ops answers, in an order that gives each route something to do: a
	// staged v2 (no published_at yet), its diff, publish, rollback, gc,
	// stats, audit, erase.
	if _, err := e.upload(spec, csvOf(rosterV2())); err != nil {
		t.Fatal(err)
	}
	opsCalls := []struct {
		method, path, body string
		want               int
	}{
		{"GET", inc + "/snapshots", "", 200},
		{"GET", inc + "/snapshots/2/diff?against=1", "", 200},
		{"GET", inc + "/snapshots/2/diff?against=x", "", 400},
		{"GET", inc + "/snapshots/x/diff", "", 400},
		{"GET", inc + "/snapshots/9/diff?against=1", "", 404},
		{"POST", inc + "/snapshots/2:publish", `{"expected_visible_version":0}`, 400},
		{"POST", inc + "/snapshots/2:publish", `{"expected_visible_version":"x"}`, 400},
		{"POST", inc + "/snapshots/2:publish", `{"expected_visible_version":1}`, 200},
		{"POST", inc + "/snapshots/1:rollback", `{"expected_visible_version":2}`, 200},
		{"POST", inc + "/snapshots/1:rollback", `{`, 400},
		{"POST", inc + "/snapshots:gc", `{"keep_last":1}`, 200},
		{"GET", inc + "/notices/stats", "", 200},
		{"POST", inc + "/notices:claim", claim, 200},
		{"POST", inc + "/notices:claim", `{"subject_id":""}`, 400},
		{"GET", "/v1/audit", "", 200},
		{"GET", "/v1/audit?page_size=x", "", 400},
		{"POST", "/v1/subjects:erase", `{"subject_id":"` + sid(1) + `"}`, 200},
		{"POST", "/v1/subjects:erase", `{"subject_id":""}`, 400},
		{"GET", inc + "/publish-requests", "", 200},
		{"GET", "/v1/incidents/BAD_ID/publish-requests", "", 400},
		{"POST", inc + "/snapshots/3:approve", `{}`, 400}, // publishes need no approval here
	}
	for _, c := range opsCalls {
		code, _, b := ops.check(t, e, c.method, c.path, e.adminTk, c.body)
		if code != c.want {
			t.Fatalf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, code, b, c.want)
		}
		if bytes.Contains(b, []byte("null")) {
			t.Fatalf("%s %s: null in %s", c.method, c.path, b)
		}
	}
	// The publish review of a server that needs two admins per publish:
	// a pending request listed, approved by another admin.
	e2 := startEnvWith(t, impacttest.Options{PublishApprovals: 2}, clientCreds{})
	e2.WaitReady(t)
	if _, err := e2.upload(spec, csvOf(rosterV1())); err != nil {
		t.Fatal(err)
	}
	ops2 := *ops
	ops2.addr = e2.Addrs.AdminHTTP
	bobTk := e2.Token(t, "ops-bob", auth.ScopeAdmin)
	for _, c := range []struct {
		method, path, tok, body string
		want                    int
	}{
		{"POST", inc + "/snapshots/1:publish", e2.adminTk, `{"expected_visible_version":0}`, 200},
		{"GET", inc + "/publish-requests", e2.adminTk, "", 200},
		{"POST", inc + "/snapshots/1:approve", e2.adminTk, `{}`, 400}, // own request
		{"POST", inc + "/snapshots/1:approve", bobTk, `{}`, 200},
	} {
		code, _, b := ops2.check(t, e2, c.method, c.path, c.tok, c.body)
		if code != c.want {
			t.Fatalf("approvals: %s %s: %d %s, want %d", c.method, c.path, code, b, c.want)
		}
	}

	// Every ops route without a token: 401 first, even with a bad value.
	for _, op := range ops.operations() {
		method, tmpl, _ := strings.Cut(op, " ")
		path := strings.NewReplacer("{incident_id}", demo.IncidentID, "{version}", "x", "{to_version}", "1").Replace(tmpl)
		if code, _, b := ops.check(t, e, method, path, "", `{}`); code != 401 {
			t.Fatalf("%s %s without a token: %d %s", method, path, code, b)
		}
	}

	checkPracticeRoutes(t, e, patient, ops) // practice_e2e_test.go

	// Every operation of both documents was answered and refused at least
	// once, and validated both times.
	for _, d := range []*servedDoc{patient, ops} {
		for _, op := range d.operations() {
			if d.ok[op] == 0 || d.failed[op] == 0 {
				t.Errorf("%s %s: %d answers and %d errors validated; want both", d.name, op, d.ok[op], d.failed[op])
			}
		}
	}
}
