package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// openTemp opens a store in a fresh temporary directory, closed at cleanup.
func openTemp(t testing.TB) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "impact.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return openTemp(b) })
}
