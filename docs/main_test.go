package docs

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/impact-health/impact/internal/testutil/testbin"
)

// binDir holds impactd and impactctl, built once for the test binary.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds cmd/impactd and cmd/impactctl as `make build` does (no race
// detector: these tests check the documentation, and a plain build starts
// faster), then runs the tests.
func run(m *testing.M) int {
	flag.Parse()
	return testbin.Run(m, "docs", false, func(dir string) { binDir = dir },
		"github.com/impact-health/impact/cmd/impactd", "github.com/impact-health/impact/cmd/impactctl")
}

// repoRoot is the repository root: the parent of this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// readDoc reads a file of this directory.
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
