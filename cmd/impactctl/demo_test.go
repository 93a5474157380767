package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDemoDefaultsToDataDir: without --out, demo writes into the dev data
// directory (git-ignored), never into the current directory.
func TestDemoDefaultsToDataDir(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dev-data")
	cwd := t.TempDir()
	t.Chdir(cwd)
	var out, errOut bytes.Buffer
	env := map[string]string{"IMPACT_DATA_DIR": data}
	a := newApp(&out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if code := a.run(context.Background(), []string{"demo", "--n", "50"}); code != 0 {
		t.Fatalf("demo: %d %s", code, errOut.String())
	}
	for _, f := range []string{"spec.yaml", "roster.csv"} {
		if _, err := os.Stat(filepath.Join(data, "demo", f)); err != nil {
			t.Fatalf("demo did not write %s into the data dir: %v", f, err)
		}
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Fatalf("demo wrote into the current directory: %v", entries)
	}
	if !bytes.Contains(out.Bytes(), []byte(filepath.Join(data, "demo", "spec.yaml"))) {
		t.Fatalf("demo does not say where it wrote: %s", out.String())
	}
}
