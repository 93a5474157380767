package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis's own log lines (dial failures, pool and
// Sentinel events) into log, at warning level, so that they become records
// of the structured log instead of plain-text lines in the middle of it.
// go-redis has one logger per process: every client, the store's and the
// rate limiters', logs through it. Its lines carry addresses and error
// texts, never keys or values.
func SetLogger(log *slog.Logger) {
	redis.SetLogger(slogAdapter{log: log})
}

type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	a.log.WarnContext(ctx, "redis client", "detail", msg)
}
