package embedded_test

import (
	"testing"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store { return embeddedtest.Open(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { return embeddedtest.Open(b) })
}

func TestFeedConformance(t *testing.T) {
	storetest.RunFeedConformance(t, func(t *testing.T, changeLog int) storetest.FeedEngine {
		return embeddedtest.Open(t, embedded.WithChangeLog(changeLog))
	})
}
