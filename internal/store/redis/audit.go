package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// The audit trail is one stream per deployment (key prefix), p{audit}:log,
// never trimmed. An event's sequence number is its stream id's first part
// (id "<seq>-0"), so that numbers run 1, 2, 3... and XRANGE pages by them.

func (s *Store) auditKey() string { return s.prefix + "{audit}:log" }

// appendAuditScript adds an event with the id after the stream's last one.
// KEYS: stream. ARGV: event. Returns the event's sequence number.
var appendAuditScript = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local n = 1
if #last > 0 then n = tonumber(string.match(last[1][1], '^(%d+)')) + 1 end
redis.call('XADD', KEYS[1], n .. '-0', 'e', ARGV[1])
return n
`)

// AppendAudit appends e to the deployment's audit stream (one script, so
// concurrent appends get consecutive numbers). With WithWait it returns
// once the replicas acknowledged it.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	b, err := store.MarshalAudit(e)
	if err != nil {
		return err
	}
	_, err = s.runScript(ctx, appendAuditScript, []string{s.auditKey()}, b)
	return err
}

// auditScan is how many stream entries ListAudit reads per XRANGE when it
// filters by incident.
const auditScan = 512

// ListAudit returns up to limit events after afterSeq, of one incident or
// of all, reading the stream in pages.
func (s *Store) ListAudit(ctx context.Context, incident string, afterSeq uint64, limit int) ([]store.AuditEvent, error) {
	limit = store.AuditLimit(limit)
	var out []store.AuditEvent
	after := afterSeq
	for len(out) < limit {
		count := int64(limit - len(out))
		if incident != "" {
			count = auditScan
		}
		msgs, err := s.c.XRangeN(ctx, s.auditKey(), "("+strconv.FormatUint(after, 10)+"-0", "+", count).Result()
		if err != nil {
			return nil, unavailable(err)
		}
		for _, m := range msgs {
			seq, err := auditSeq(m.ID)
			if err != nil {
				return nil, err
			}
			after = seq
			v, _ := m.Values["e"].(string)
			e, err := store.UnmarshalAudit(seq, []byte(v))
			if err != nil {
				return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
			}
			if incident != "" && e.Incident != incident {
				continue
			}
			out = append(out, e)
			if len(out) == limit {
				break
			}
		}
		if int64(len(msgs)) < count {
			break
		}
	}
	return out, nil
}

// auditSeq parses the sequence number of a stream id "<seq>-0".
func auditSeq(id string) (uint64, error) {
	ms, _, _ := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: malformed audit id", store.ErrUnavailable)
	}
	return seq, nil
}
