// Package embeddedtest opens temporary embedded stores for tests.
package embeddedtest

import (
	"path/filepath"
	"testing"

	"github.com/impact-health/impact/internal/store/embedded"
)

// Open opens an embedded store in a new temporary directory of tb, and
// closes it when the test ends.
func Open(tb testing.TB, opts ...embedded.Option) *embedded.Store {
	tb.Helper()
	st, err := embedded.Open(filepath.Join(tb.TempDir(), "impact.db"), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}
