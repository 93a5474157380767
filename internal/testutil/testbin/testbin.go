// Package testbin builds the repository's commands once for a test binary
// whose tests run them as processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Build builds the packages (import paths of main packages) into dir with
// `go build`, under the race detector when race is set; each binary is named
// after the last element of its package's path.
func Build(dir string, race bool, pkgs ...string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	if b, err := exec.Command(goBin(), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, b)
	}
	return nil
}

// Run is the body of a TestMain: it builds pkgs (see Build) into a fresh
// temporary directory, hands the directory to use, runs the tests and
// removes the directory. It returns the tests' exit code, or 1 when the
// directory or the build fails (the error goes to stderr, after label).
func Run(m *testing.M, label string, race bool, use func(dir string), pkgs ...string) int {
	dir, err := os.MkdirTemp("", "impact-"+label+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", label, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := Build(dir, race, pkgs...); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", label, err)
		return 1
	}
	use(dir)
	return m.Run()
}

// goBin is the go command: the one on PATH, else the toolchain's own.
func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
