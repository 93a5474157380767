// Package browsertest finds the headless browser that the browser tests
// (the patient web page, the HTML part of notice emails) drive.
package browsertest

import (
	"os"
	"os/exec"
	"testing"
)

// ChromiumPath finds Debian's chromium. Without it the test is skipped,
// except in CI, where it must run.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI=true): .ci/run installs it")
	}
	t.Skip("chromium is not installed; apt-get install chromium to run the browser test")
	return ""
}
