// Package deploy holds the deployment files of Impact (Kubernetes manifests,
// an OpenTelemetry Collector configuration); its test checks that they
// parse and keep the properties the manifests promise in their comments.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// docs parses every YAML document of every file under dir.
func docs(t *testing.T, dir string) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Errorf("%s: %v", path, err)
				break
			}
			if doc != nil {
				out[path] = append(out[path], doc)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// get walks a parsed document: keys for maps, integers for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestManifestsParse(t *testing.T) {
	all := docs(t, ".")
	if len(all) < 10 {
		t.Fatalf("found %d YAML files under deploy/, want the manifests and the collector config", len(all))
	}
	for path, ds := range all {
		for _, d := range ds {
			if filepath.Base(path) == "otel-collector.yaml" {
				continue
			}
			if get(d, "apiVersion") == nil || get(d, "kind") == nil {
				t.Errorf("%s: a document without apiVersion or kind", path)
			}
			if get(d, "kind") != "Kustomization" && get(d, "metadata", "name") == nil {
				t.Errorf("%s: %v without metadata.name", path, get(d, "kind"))
			}
			if get(d, "metadata", "namespace") != nil {
				t.Errorf("%s: manifests must be namespace-agnostic", path)
			}
		}
	}
}

// TestKustomizationsResolve: every resource and patch a kustomization names
// exists.
func TestKustomizationsResolve(t *testing.T) {
	n := 0
	for path, ds := range docs(t, "kubernetes") {
		if filepath.Base(path) != "kustomization.yaml" {
			continue
		}
		n++
		var refs []string
		for _, r := range get(ds[0], "resources").([]any) {
			refs = append(refs, r.(string))
		}
		if ps, ok := get(ds[0], "patches").([]any); ok {
			for i := range ps {
				refs = append(refs, get(ps, i, "path").(string))
			}
		}
		for _, r := range refs {
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), r)); err != nil {
				t.Errorf("%s names %s: %v", path, r, err)
			}
		}
	}
	if n != 4 {
		t.Fatalf("%d kustomizations, want the default, the base and the Sentinel and Cluster examples", n)
	}
}

// TestKustomizeBuild renders every setup with `kubectl kustomize` when
// kubectl is installed: the overlays apply and each yields one Deployment
// with exactly one way to reach Redis.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	for dir, want := range map[string]string{
		"kubernetes":                         "IMPACT_REDIS_URL",
		"kubernetes/examples/redis-sentinel": "IMPACT_REDIS_SENTINEL_ADDRS",
		"kubernetes/examples/redis-cluster":  "IMPACT_REDIS_CLUSTER_ADDRS",
	} {
		out, err := exec.Command(kubectl, "kustomize", dir).Output()
		if err != nil {
			t.Errorf("kubectl kustomize %s: %v", dir, err)
			continue
		}
		found := regexp.MustCompile(`name: (IMPACT_REDIS_URL|IMPACT_REDIS_SENTINEL_ADDRS|IMPACT_REDIS_CLUSTER_ADDRS)\n`).FindAllSubmatch(out, -1)
		if len(found) != 1 || string(found[0][1]) != want || bytes.Count(out, []byte("\nkind: Deployment\n")) != 1 {
			t.Errorf("%s renders Redis settings %q, want only %s", dir, found, want)
		}
	}
}

// byKind returns the base manifest of a kind.
func byKind(t *testing.T, kind string) map[string]any {
	t.Helper()
	for _, ds := range docs(t, "kubernetes/base") {
		for _, d := range ds {
			if get(d, "kind") == kind {
				return d
			}
		}
	}
	t.Fatalf("no %s", kind)
	return nil
}

func TestDeployment(t *testing.T) {
	dep := byKind(t, "Deployment")
	spec := get(dep, "spec", "template", "spec")
	c := get(spec, "containers", 0)
	args := map[string]string{}
	for _, a := range get(c, "args").([]any) {
		k, v, _ := strings.Cut(a.(string), "=")
		args[k] = v
	}
	env := map[string]any{}
	for _, e := range get(c, "env").([]any) {
		env[get(e, "name").(string)] = e
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"replicas", get(dep, "spec", "replicas"), 3},
		{"--store", args["--store"], "redis"},
		{"Redis URL from a Secret", get(env["IMPACT_REDIS_URL"], "valueFrom", "secretKeyRef", "key"), "url"},
		{"runAsNonRoot", get(spec, "securityContext", "runAsNonRoot"), true},
		{"readOnlyRootFilesystem", get(c, "securityContext", "readOnlyRootFilesystem"), true},
		{"no privilege escalation", get(c, "securityContext", "allowPrivilegeEscalation"), false},
		{"capabilities dropped", get(c, "securityContext", "capabilities", "drop", 0), "ALL"},
		{"liveness", get(c, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"readiness", get(c, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"service account token", get(spec, "automountServiceAccountToken"), false},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	for _, r := range []string{"requests", "limits"} {
		if get(c, "resources", r, "cpu") == nil || get(c, "resources", r, "memory") == nil {
			t.Errorf("resources.%s must set cpu and memory", r)
		}
	}
	if get(spec, "topologySpreadConstraints", 0) == nil {
		t.Error("no topology spread")
	}
	// The grace period covers preStop and the drain.
	shutdown, err := time.ParseDuration(args["--shutdown-timeout"])
	if err != nil {
		t.Fatalf("--shutdown-timeout: %v", err)
	}
	grace, _ := get(spec, "terminationGracePeriodSeconds").(int)
	preStop, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	if time.Duration(grace-preStop)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %d - preStop %ds must exceed --shutdown-timeout %s", grace, preStop, shutdown)
	}
	// Secrets are mounted, never written into the manifest.
	for name, e := range env {
		if v, ok := get(e, "value").(string); ok && regexp.MustCompile(`(?i)redis://|rediss://|password|secret`).MatchString(v) {
			t.Errorf("env %s holds a literal secret-looking value", name)
		}
	}
}

// TestOpsListenerNotInService: the Service carries the patient ports only,
// and the NetworkPolicy admits the ops ports only from selected peers.
func TestOpsListenerNotInService(t *testing.T) {
	svc := byKind(t, "Service")
	var ports []string
	for _, p := range get(svc, "spec", "ports").([]any) {
		ports = append(ports, strconv.Itoa(get(p, "port").(int)))
	}
	if strings.Join(ports, ",") != "8080,9090" {
		t.Fatalf("Service ports %v, want the patient ports 8080,9090 only", ports)
	}
	np := byKind(t, "NetworkPolicy")
	for i, rule := range get(np, "spec", "ingress").([]any) {
		for _, p := range get(rule, "ports").([]any) {
			port := get(p, "port").(int)
			if (port == 9091 || port == 8081) && get(rule, "from") == nil {
				t.Errorf("ingress rule %d admits ops port %d from everywhere", i, port)
			}
		}
	}
	if got := get(byKind(t, "PodDisruptionBudget"), "spec", "minAvailable"); got != 2 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 2", got)
	}
	if got := get(byKind(t, "HorizontalPodAutoscaler"), "spec", "metrics", 0, "resource", "target", "averageUtilization"); got != 60 {
		t.Errorf("HPA CPU target %v, want 60", got)
	}
}

func TestCollectorPipelines(t *testing.T) {
	ds := docs(t, ".")["otel-collector.yaml"]
	if len(ds) != 1 {
		t.Fatal("otel-collector.yaml: want one document")
	}
	cfg := ds[0]
	for _, p := range []string{"traces", "metrics", "logs"} {
		pipe := get(cfg, "service", "pipelines", p)
		for _, part := range []string{"receivers", "processors", "exporters"} {
			for _, name := range get(pipe, part).([]any) {
				if get(cfg, part, name.(string)) == nil {
					t.Errorf("pipeline %s uses %s %s, which is not defined", p, part, name)
				}
			}
		}
	}
	if get(cfg, "receivers", "prometheus", "config", "scrape_configs", 0, "metrics_path") != "/metrics" {
		t.Error("the collector does not scrape impactd's /metrics")
	}
}
