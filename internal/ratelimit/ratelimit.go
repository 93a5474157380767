// Package ratelimit limits how often a caller may call Impact: a generic cell
// rate algorithm (GCRA) per key, in process (Local: the patient limits in
// every store mode, each replica enforcing its share of a global limit, and
// the practice limit on the embedded store) or in Redis (Redis, shared by
// every replica: the practice limit with the Redis store, one decision per
// batch of ids).
//
// Keys are opaque strings chosen by the caller. They must never be raw
// identifiers: Hasher turns a subject id or a client address into a keyed
// hash (HMAC-SHA256 under a server secret) so that neither memory dumps nor
// Redis keys hold them.
package ratelimit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limiter decides whether one more event for key is allowed now. When it is
// not, retryAfter is how long the caller should wait before the next event
// can be allowed. err is set only when the limiter could not decide (for
// example Redis is unreachable); ok and retryAfter are then meaningless.
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Limit is a GCRA limit: Rate events per Period on average, and at most
// Burst events at once after a quiet spell.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// IsZero reports whether l is the zero Limit (no limit configured).
func (l Limit) IsZero() bool { return l == Limit{} }

// Interval is the emission interval: the average time between two events.
func (l Limit) Interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// Validate reports whether l is usable.
func (l Limit) Validate() error {
	switch {
	case l.Rate <= 0:
		return errors.New("rate must be positive")
	case l.Period <= 0:
		return errors.New("period must be positive")
	case l.Burst <= 0:
		return errors.New("burst must be positive")
	case l.Period/time.Duration(l.Rate) <= 0:
		return errors.New("rate too high for its period")
	}
	return nil
}

// String formats l the way ParseLimit reads it, e.g. "5/s:20".
func (l Limit) String() string {
	if l.IsZero() {
		return "off"
	}
	unit := l.Period.String()
	switch l.Period {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d/%s:%d", l.Rate, unit, l.Burst)
}

// ParseLimit reads a limit: "RATE/UNIT[:BURST]" with UNIT s, m, h or a Go
// duration ("5/s:20" is 5 per second, bursts of 20; "300/m" is 300 per
// minute, bursts of 300), or "off" (or "" or "0") for no limit (the zero
// Limit). The burst defaults to the rate.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "0", "off", "none":
		return Limit{}, nil
	}
	bad := func(why string) (Limit, error) {
		return Limit{}, fmt.Errorf("rate limit %q: %s (want RATE/UNIT[:BURST], e.g. 5/s:20, or off)", s, why)
	}
	spec, burstText, hasBurst := strings.Cut(s, ":")
	rateText, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return bad("missing /UNIT")
	}
	rate, err := strconv.Atoi(strings.TrimSpace(rateText))
	if err != nil || rate <= 0 {
		return bad("rate must be a positive integer")
	}
	var period time.Duration
	switch u := strings.TrimSpace(unit); u {
	case "s", "sec", "second":
		period = time.Second
	case "m", "min", "minute":
		period = time.Minute
	case "h", "hour":
		period = time.Hour
	default:
		if period, err = time.ParseDuration(u); err != nil || period <= 0 {
			return bad("unit must be s, m, h or a positive duration")
		}
	}
	burst := rate
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(burstText)); err != nil || burst <= 0 {
			return bad("burst must be a positive integer")
		}
	}
	l := Limit{Rate: rate, Period: period, Burst: burst}
	if err := l.Validate(); err != nil {
		return bad(err.Error())
	}
	return l, nil
}

// Hasher derives limiter keys from identifiers: the first 16 bytes of
// HMAC-SHA256(secret, "impact-rate\x00" + namespace + "\x00" + id), hex
// encoded. Replicas that share a Redis limiter must share the secret
// (impactd derives it from its pepper). It is safe for concurrent use.
type Hasher struct {
	pool sync.Pool // of *hasherState
}

type hasherState struct {
	mac hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// MinSecretBytes is the shortest secret NewHasher accepts.
const MinSecretBytes = 16

// NewHasher returns a Hasher under secret (copied).
func NewHasher(secret []byte) (*Hasher, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("ratelimit: secret is %d bytes; at least %d are required", len(secret), MinSecretBytes)
	}
	key := append([]byte(nil), secret...)
	h := &Hasher{}
	h.pool.New = func() any { return &hasherState{mac: hmac.New(sha256.New, key), buf: make([]byte, 0, 128)} }
	return h, nil
}

// Key returns the limiter key of id within a namespace (e.g. "sub", "ip"):
// namespace + ":" + 32 hex digits. The namespace stays in clear so that
// keys of different limits never collide and an operator can tell them
// apart; id is not recoverable.
func (h *Hasher) Key(namespace, id string) string {
	st := h.pool.Get().(*hasherState)
	st.mac.Reset()
	st.buf = append(append(append(append(st.buf[:0], "impact-rate\x00"...), namespace...), 0), id...)
	st.mac.Write(st.buf)
	st.mac.Sum(st.sum[:0])
	var out [64 + 1 + 32]byte
	n := copy(out[:64], namespace)
	out[n] = ':'
	hex.Encode(out[n+1:], st.sum[:16])
	if cap(st.buf) > 4096 {
		st.buf = make([]byte, 0, 128)
	}
	h.pool.Put(st)
	if len(namespace) > 64 {
		return namespace + ":" + string(out[n+1:n+33])
	}
	return string(out[:n+33])
}

// ExceededError is returned when a limiter refused an event; the transport
// maps it to RESOURCE_EXHAUSTED (429) with a retry delay.
type ExceededError struct {
	// RetryAfter is how long to wait before the next event can be allowed.
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("rate limit exceeded, retry in %s", e.RetryAfter.Round(time.Millisecond))
}
