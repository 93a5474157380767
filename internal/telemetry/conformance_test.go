package telemetry

import (
	"path/filepath"
	"testing"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/storetest"
)

// TestInstrumentedStoreConformance: the decorator is transparent, the
// instrumented embedded store passes the store conformance suite.
func TestInstrumentedStoreConformance(t *testing.T) {
	tel, _, _ := testTelemetry(t)
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		st, err := embedded.Open(filepath.Join(t.TempDir(), "impact.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return InstrumentStore(st, tel)
	})
}
