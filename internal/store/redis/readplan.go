package redisstore

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/store"
)

// ReadPlan names the three reads of Read's pipeline that every patient read
// needs while the pin lives only in Redis: the incident's head (HMGET
// visible, latest), the subject's pin (HGET) and its record at the visible
// version (HMGET of the subject's field and the bucket's sentinel). Read
// also checks the tombstone in the same pipeline.
//
// It exists for the load harness, whose baseline server sends exactly this
// pipeline per request (the ceiling of any server that reads Redis once per
// request); the service never uses it. The key layout stays in this package.
type ReadPlan struct {
	HeadKey    string
	HeadFields []string
	PinsKey    string
	RecordKey  string
	// Field is the subject's field in the pins and records hashes (its
	// subject key, binary).
	Field string
	// RecordFields are Field and the records bucket's sentinel.
	RecordFields []string
}

// ReadPlan returns the reads of key's status at the incident's visible
// version. It fails with store.ErrNotFound when the incident has no visible
// version.
func (s *Store) ReadPlan(ctx context.Context, incident string, key store.Key) (ReadPlan, error) {
	pinBits, err := s.pinBitsOf(ctx, incident)
	if err != nil {
		return ReadPlan{}, err
	}
	head, err := s.c.HMGet(ctx, s.headKey(incident), "visible", "latest").Result()
	if err != nil {
		return ReadPlan{}, unavailable(err)
	}
	h, ok, err := parseHead(incident, head)
	if err != nil {
		return ReadPlan{}, err
	}
	if !ok || h.Visible == 0 {
		return ReadPlan{}, fmt.Errorf("incident has no visible version: %w", store.ErrNotFound)
	}
	bits, set, err := s.bitsOf(ctx, incident, h.Visible)
	if err != nil {
		return ReadPlan{}, err
	}
	if !set {
		return ReadPlan{}, fmt.Errorf("%w: visible version %d has no records", store.ErrUnavailable, h.Visible)
	}
	field := string(key[:])
	return ReadPlan{
		HeadKey:      s.headKey(incident),
		HeadFields:   []string{"visible", "latest"},
		PinsKey:      s.pinsKey(incident, bucket(key, pinBits)),
		RecordKey:    s.recordsKey(incident, h.Visible, bucket(key, bits)),
		Field:        field,
		RecordFields: []string{field, sentinelName},
	}, nil
}
