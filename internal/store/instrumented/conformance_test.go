package instrumented

import (
	"testing"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

// TestConformance: the decorator is transparent, the instrumented embedded
// store passes the store conformance suite.
func TestConformance(t *testing.T) {
	tel, _, _ := testTelemetry(t)
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		return New(embeddedtest.Open(t), tel)
	})
}
