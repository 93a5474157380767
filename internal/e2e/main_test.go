package e2e

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/impact-health/impact/internal/testutil/testbin"
)

// impactdBin is the impactd binary built once for the test binary.
var impactdBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	// impactd is built with the race detector when the test binary has it.
	return testbin.Run(m, "e2e", raceEnabled, func(dir string) { impactdBin = filepath.Join(dir, "impactd") },
		"github.com/impact-health/impact/cmd/impactd")
}
