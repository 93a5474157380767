package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/impact-health/impact/internal/store"
)

// openRedis connects the Redis store. Filled in with the Redis store.
func openRedis(ctx context.Context, cfg *config, log *slog.Logger) (store.Store, error) {
	return nil, errors.New("--store redis is not available in this build yet")
}
