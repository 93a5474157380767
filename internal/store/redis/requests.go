package redisstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// requestsKey is an incident's pending publish requests, in the incident's
// slot: a hash of "<ver>" -> store.MarshalPublishRequest JSON (without
// approvals) and "<ver>:by" -> the approvers, one per line, in order.
func (s *Store) requestsKey(inc string) string { return s.prefix + "{i:" + inc + "}:requests" }

// putRequestScript records a new request. KEYS: head, requests. ARGV:
// version, doc. Returns 'ok', 'notfound' or 'exists'.
var putRequestScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'notfound' end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'exists' end
redis.call('HDEL', KEYS[2], ARGV[1] .. ':by')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 'ok'
`)

// approveScript adds an approver once. KEYS: requests. ARGV: version,
// approver. Returns {doc, approvers} or {} if there is no request.
var approveScript = redis.NewScript(`
local doc = redis.call('HGET', KEYS[1], ARGV[1])
if not doc then return {} end
local by = redis.call('HGET', KEYS[1], ARGV[1] .. ':by') or ''
if string.find('\n' .. by .. '\n', '\n' .. ARGV[2] .. '\n', 1, true) == nil then
  if by == '' then by = ARGV[2] else by = by .. '\n' .. ARGV[2] end
  redis.call('HSET', KEYS[1], ARGV[1] .. ':by', by)
end
return {doc, by}
`)

func decodeRequest(doc, by string) (store.PendingPublish, error) {
	r, err := store.UnmarshalPublishRequest([]byte(doc))
	if err != nil {
		return store.PendingPublish{}, err
	}
	r.ApprovedBy = nil
	if by != "" {
		r.ApprovedBy = strings.Split(by, "\n")
	}
	return r, nil
}

// PutPublishRequest records a new request.
func (s *Store) PutPublishRequest(ctx context.Context, r store.PendingPublish) error {
	r.ApprovedBy = nil
	doc, err := store.MarshalPublishRequest(r)
	if err != nil {
		return err
	}
	res, err := s.runScript(ctx, putRequestScript, []string{s.headKey(r.Incident), s.requestsKey(r.Incident)}, r.Version, string(doc))
	if err != nil {
		return err
	}
	switch res {
	case "ok":
		return nil
	case "notfound":
		return fmt.Errorf("incident: %w", store.ErrNotFound)
	case "exists":
		return fmt.Errorf("a publish request for v%d exists: %w", r.Version, store.ErrConflict)
	}
	return fmt.Errorf("%w: unexpected reply", store.ErrUnavailable)
}

// GetPublishRequest returns the request for a version.
func (s *Store) GetPublishRequest(ctx context.Context, incident string, version uint64) (store.PendingPublish, error) {
	v := strconv.FormatUint(version, 10)
	vals, err := s.c.HMGet(ctx, s.requestsKey(incident), v, v+":by").Result()
	if err != nil {
		return store.PendingPublish{}, unavailable(err)
	}
	doc, ok := vals[0].(string)
	if !ok {
		return store.PendingPublish{}, fmt.Errorf("publish request for v%d: %w", version, store.ErrNotFound)
	}
	by, _ := vals[1].(string)
	return decodeRequest(doc, by)
}

// ListPublishRequests returns an incident's requests by version.
func (s *Store) ListPublishRequests(ctx context.Context, incident string) ([]store.PendingPublish, error) {
	all, err := s.c.HGetAll(ctx, s.requestsKey(incident)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	var out []store.PendingPublish
	for f, doc := range all {
		if strings.Contains(f, ":") {
			continue
		}
		r, err := decodeRequest(doc, all[f+":by"])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// ApprovePublishRequest adds an approval, once.
func (s *Store) ApprovePublishRequest(ctx context.Context, incident string, version uint64, approver string) (store.PendingPublish, error) {
	res, err := s.runScript(ctx, approveScript, []string{s.requestsKey(incident)}, version, approver)
	if err != nil {
		return store.PendingPublish{}, err
	}
	arr, _ := res.([]any)
	if len(arr) == 0 {
		return store.PendingPublish{}, fmt.Errorf("publish request for v%d: %w", version, store.ErrNotFound)
	}
	doc, _ := arr[0].(string)
	by, _ := arr[1].(string)
	return decodeRequest(doc, by)
}

// DeletePublishRequest removes the request for a version.
func (s *Store) DeletePublishRequest(ctx context.Context, incident string, version uint64) error {
	v := strconv.FormatUint(version, 10)
	if err := s.c.HDel(ctx, s.requestsKey(incident), v, v+":by").Err(); err != nil {
		return unavailable(err)
	}
	return nil
}
