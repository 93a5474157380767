package server

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/impact-health/impact/gen/impact/v1" // registers the API's descriptors
	"github.com/impact-health/impact/gen/openapiv2"
)

// apiDoc is the OpenAPI document one REST listener serves, and the routes
// it lists (which answer 405 with Allow for another method).
type apiDoc struct {
	json   []byte
	routes []docRoute
}

// docRoute is one path template of the document and its methods.
type docRoute struct {
	re      *regexp.Regexp
	methods []string // upper case, sorted
}

// patientServices and opsServices are the gRPC services (OpenAPI tags)
// each REST listener serves: its document lists these and nothing else.
var (
	patientServices = []string{"StatusService", "PracticeService"}
	opsServices     = []string{"SnapshotService", "NoticeService", "SubjectService", "PracticeStatsService"}
)

// buildAPIDoc derives a listener's document from the generated merged
// document: only the operations of services, the definitions they
// reference, a title naming the listener, and each uint32 parameter with
// its real range (the generator documents path and query parameters of
// type uint32 as int64 with no bounds).
func buildAPIDoc(title string, services []string) (*apiDoc, error) {
	var doc map[string]any
	if err := json.Unmarshal(openapiv2.All, &doc); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	doc["info"] = map[string]any{"title": title, "version": "v1"}
	paths, _ := doc["paths"].(map[string]any)
	var tags []any
	for _, t := range asSlice(doc["tags"]) {
		if name, _ := asMap(t)["name"].(string); slices.Contains(services, name) {
			tags = append(tags, t)
		}
	}
	doc["tags"] = tags
	out := &apiDoc{}
	for path, item := range paths {
		ops := asMap(item)
		var methods []string
		for method, op := range ops {
			o := asMap(op)
			if !servedBy(o, services) {
				delete(ops, method)
				continue
			}
			if err := boundUint32Params(o); err != nil {
				return nil, err
			}
			methods = append(methods, strings.ToUpper(method))
		}
		if len(methods) == 0 {
			delete(paths, path)
			continue
		}
		slices.Sort(methods)
		out.routes = append(out.routes, docRoute{re: pathRegexp(path), methods: methods})
	}
	pruneDefinitions(doc)
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	out.json = b
	return out, nil
}

// allow returns the methods the document lists for path, sorted; none when
// it lists the path for no method.
func (d *apiDoc) allow(path string) []string {
	var out []string
	for _, r := range d.routes {
		if r.re.MatchString(path) {
			out = append(out, r.methods...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func servedBy(op map[string]any, services []string) bool {
	for _, t := range asSlice(op["tags"]) {
		if s, _ := t.(string); slices.Contains(services, s) {
			return true
		}
	}
	return false
}

var templateParam = regexp.MustCompile(`\{[^}]+\}`)

// pathRegexp matches the request paths of a path template such as
// /v1/incidents/{incident_id}/snapshots/{version}:publish.
func pathRegexp(template string) *regexp.Regexp {
	parts := templateParam.Split(template, -1)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, "[^/]+") + "$")
}

// boundUint32Params documents each path or query parameter whose proto
// field is a uint32 as what the server accepts: an integer from 0 to
// 4294967295. The field is found from the operation id (Service_Method)
// and the parameter name (the proto field path).
func boundUint32Params(op map[string]any) error {
	id, _ := op["operationId"].(string)
	svc, method, ok := strings.Cut(id, "_")
	if !ok {
		return fmt.Errorf("openapi: operation id %q is not Service_Method", id)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("impact.v1." + svc))
	if err != nil {
		return fmt.Errorf("openapi: operation %s: %w", id, err)
	}
	m := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method))
	if m == nil {
		return fmt.Errorf("openapi: operation %s: no such method", id)
	}
	for _, p := range asSlice(op["parameters"]) {
		param := asMap(p)
		if in, _ := param["in"].(string); in != "path" && in != "query" {
			continue
		}
		name, _ := param["name"].(string)
		if f := fieldByPath(m.Input(), name); f != nil && f.Kind() == protoreflect.Uint32Kind && !f.IsList() {
			param["format"] = "uint32"
			param["minimum"] = 0
			param["maximum"] = uint64(1<<32 - 1)
		}
	}
	return nil
}

// fieldByPath finds a field by its dotted proto path ("a.b").
func fieldByPath(md protoreflect.MessageDescriptor, path string) protoreflect.FieldDescriptor {
	var f protoreflect.FieldDescriptor
	for _, name := range strings.Split(path, ".") {
		if md == nil {
			return nil
		}
		if f = md.Fields().ByName(protoreflect.Name(name)); f == nil {
			return nil
		}
		md = f.Message()
	}
	return f
}

// pruneDefinitions removes the definitions no remaining path references,
// directly or through another definition.
func pruneDefinitions(doc map[string]any) {
	defs := asMap(doc["definitions"])
	keep := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				name := strings.TrimPrefix(ref, "#/definitions/")
				if !keep[name] {
					keep[name] = true
					walk(defs[name])
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc["paths"])
	for name := range defs {
		if !keep[name] {
			delete(defs, name)
		}
	}
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asSlice(v any) []any        { s, _ := v.([]any); return s }
