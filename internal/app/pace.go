package app

import (
	"github.com/impact-health/impact/internal/pace"
	"github.com/impact-health/impact/internal/snapshot"
)

// newPacer is the process's one Pacer: the patient listener counts its
// calls into it, and background work (uploads and rollbacks: parsing,
// staging, read-back; and anything else that loads in the background, such
// as loading a version into memory) yields to it. Config.BackgroundMaxPause
// 0 turns pacing off: nil, which never pauses.
func newPacer(cfg *Config) *pace.Pacer {
	if cfg.BackgroundMaxPause <= 0 {
		return nil
	}
	return pace.New(pace.Config{MaxPause: cfg.BackgroundMaxPause})
}

// pacedSnapshots is the snapshot.Service option that makes uploads and
// rollbacks yield to p (none when p is nil: a nil *pace.Pacer would be a
// non-nil store.Pacer).
func pacedSnapshots(p *pace.Pacer) snapshot.Option {
	if p == nil {
		return snapshot.WithPacer(nil)
	}
	return snapshot.WithPacer(p)
}
