package main

// Golden tests of what an operator reads when impactd refuses a command:
// the real in-process server (impacttest), the real CLI, stderr compared
// with testdata/errors/*.golden. Run with -update to rewrite them after a
// deliberate change of wording, and review the diff.

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

var update = flag.Bool("update", false, "rewrite the golden files of the operator messages")

func TestOperatorMessagesGolden(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	dir := t.TempDir()
	spec, roster := demoFiles(t, dir, 50)
	inc := demo.IncidentID
	specText, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if !bytes.Contains(specText, []byte("support_contact:")) {
		t.Fatal("the demo spec has no support_contact key to misspell")
	}
	typo := write("typo.yaml", strings.Replace(string(specText), "support_contact:", "suport_contact:", 1))
	broken := write("broken.yaml", "incident: [unclosed\n"+string(specText))
	badCohort := write("bad-cohort.csv", "subject_id,status,cohorts\npatient-1,affected,northland\npatient-2,affected,northlnd\n")

	for v := 1; v <= 3; v++ {
		d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)
	}
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1", "--expect", "0")

	steps := []struct {
		golden string
		args   []string
		before func() // runs first
	}{
		{"publish-stale-expect", []string{"snapshot", "publish", "--incident", inc, "--version", "2", "--expect", "0"}, nil},
		{"publish-older-version", []string{"snapshot", "publish", "--incident", inc, "--version", "2", "--expect", "3"},
			func() { d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "3", "--expect", "1") }},
		{"rollback-stale-expect", []string{"snapshot", "rollback", "--incident", inc, "--to", "1", "--expect", "2"}, nil},
		{"list-unknown-incident", []string{"snapshot", "list", "--incident", "no-such-incident"}, nil},
		{"diff-unknown-version", []string{"snapshot", "diff", "--incident", inc, "--version", "9", "--against", "3"}, nil},
		{"upload-unknown-cohort", []string{"snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", badCohort}, nil},
		{"upload-unknown-spec-key", []string{"snapshot", "upload", "--incident", inc, "--spec", typo, "--roster", roster}, nil},
		{"upload-invalid-yaml", []string{"snapshot", "upload", "--incident", inc, "--spec", broken, "--roster", roster}, nil},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		code, _, got := d.run(t, s.args...)
		if code != exitError {
			t.Errorf("%s: exit %d, want %d\nstderr: %s", s.golden, code, exitError, got)
			continue
		}
		for _, leak := range []string{"embedded:", "redis:", "rpc error", "patient-2"} {
			if strings.Contains(got, leak) {
				t.Errorf("%s: message shows %q to the operator:\n%s", s.golden, leak, got)
			}
		}
		path := filepath.Join("testdata", "errors", s.golden+".golden")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestOperatorMessagesGolden -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s:\ngot  %s\nwant %s", s.golden, got, want)
		}
	}
}
