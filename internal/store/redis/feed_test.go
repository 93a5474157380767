package redisstore_test

import (
	"testing"

	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/storetest"
)

func TestFeedConformance(t *testing.T) {
	storetest.RunFeedConformance(t, func(t *testing.T, changeLog int) storetest.FeedEngine {
		s, _ := openStore(t, redisstore.WithChangeLog(changeLog))
		return s
	})
}
