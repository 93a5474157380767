package app

import (
	"fmt"

	"github.com/impact-health/impact/internal/ratelimit"
)

// newLimiters builds the patient listener's rate limits, in process in
// every store mode, so that no decision costs a round trip. Each configured
// limit is global (what one subject or address gets across the deployment):
// with replicas set, each replica enforces its share, the limit divided by
// replicas() (see ratelimit.WithReplicas and docs/contract.md, "Rate
// limits", for the bounds this gives); nil is one replica. Limiter keys are
// keyed hashes of the subject or client address under a secret derived
// from the pepper, never the raw values.
func newLimiters(c *Config, pepper []byte, replicas func() int) (subject, addr ratelimit.Limiter, keys *ratelimit.Hasher, err error) {
	if c.RateSubject.IsZero() && c.RateIP.IsZero() {
		return nil, nil, nil, nil
	}
	if keys, err = ratelimit.NewHasherFromPepper(pepper); err != nil {
		return nil, nil, nil, err
	}
	var opts []ratelimit.LocalOption
	if replicas != nil {
		opts = append(opts, ratelimit.WithReplicas(replicas))
	}
	build := func(l ratelimit.Limit) (ratelimit.Limiter, error) {
		if l.IsZero() {
			return nil, nil
		}
		return ratelimit.NewLocal(l, opts...)
	}
	if subject, err = build(c.RateSubject); err == nil {
		addr, err = build(c.RateIP)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("rate limit: %w", err)
	}
	return subject, addr, keys, nil
}
