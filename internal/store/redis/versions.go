package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// infoJSON is the stored form of a version's info ("<v>" field). Incident,
// version, state and publish details are stored apart.
type infoJSON struct {
	Digest    string       `json:"digest,omitempty"`
	Counts    store.Counts `json:"counts"`
	CreatedBy string       `json:"created_by"`
	CreatedAt int64        `json:"created_at"`
	Source    string       `json:"source"`
}

// pubJSON is the stored form of "<v>:pub".
type pubJSON struct {
	By string `json:"by"`
	At int64  `json:"at"`
}

type manifestJSON struct {
	Spec      []byte   `json:"spec"`
	Cohorts   int      `json:"cohorts"`
	Practices []string `json:"practices"`
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func parseState(s string) (store.State, error) {
	switch s {
	case "1":
		return store.StateStaging, nil
	case "2":
		return store.StateStaged, nil
	case "3":
		return store.StatePublished, nil
	case "4", stateDeleting:
		return store.StateAborted, nil
	}
	return 0, fmt.Errorf("%w: corrupt version state", store.ErrUnavailable)
}

// decodeInfo builds a VersionInfo from its stored fields.
func decodeInfo(inc string, v uint64, info, state, pub string) (store.VersionInfo, error) {
	out := store.VersionInfo{Incident: inc, Version: v}
	var err error
	if out.State, err = parseState(state); err != nil {
		return out, err
	}
	var ij infoJSON
	if err := json.Unmarshal([]byte(info), &ij); err != nil {
		return out, fmt.Errorf("%w: corrupt version info", store.ErrUnavailable)
	}
	if ij.Digest != "" {
		if out.Digest, err = store.ParseDigest(ij.Digest); err != nil {
			return out, fmt.Errorf("%w: corrupt version digest", store.ErrUnavailable)
		}
	}
	out.Counts, out.CreatedBy, out.CreatedAt, out.Source = ij.Counts, ij.CreatedBy, fromUnixNano(ij.CreatedAt), ij.Source
	if pub != "" {
		var pj pubJSON
		if err := json.Unmarshal([]byte(pub), &pj); err != nil {
			return out, fmt.Errorf("%w: corrupt publish info", store.ErrUnavailable)
		}
		out.PublishedBy, out.PublishedAt = pj.By, fromUnixNano(pj.At)
	}
	return out, nil
}

// Incidents lists every incident with its head, sorted by id.
func (s *Store) Incidents(ctx context.Context) ([]store.Head, error) {
	ids, err := s.c.SMembers(ctx, s.incidentsKey()).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	sort.Strings(ids)
	cmds := make([]*redis.SliceCmd, len(ids))
	if len(ids) > 0 {
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HMGet(ctx, s.headKey(id), "visible", "latest")
			}
			return nil
		})
		if err != nil {
			return nil, unavailable(err)
		}
	}
	out := make([]store.Head, 0, len(ids))
	for i, id := range ids {
		h, ok, err := parseHead(id, cmds[i].Val())
		if err != nil {
			return nil, err
		}
		if ok { // an id added by a Stage that did not get to allocate is skipped
			out = append(out, h)
		}
	}
	return out, nil
}

func parseHead(inc string, vals []any) (store.Head, bool, error) {
	h := store.Head{Incident: inc}
	if len(vals) != 2 || vals[1] == nil {
		return h, false, nil
	}
	var err1, err2 error
	if vals[0] != nil {
		h.Visible, err1 = strconv.ParseUint(vals[0].(string), 10, 64)
	}
	h.Latest, err2 = strconv.ParseUint(vals[1].(string), 10, 64)
	if err1 != nil || err2 != nil {
		return h, false, fmt.Errorf("%w: corrupt incident head", store.ErrUnavailable)
	}
	return h, true, nil
}

// Head returns one incident's head.
func (s *Store) Head(ctx context.Context, incident string) (store.Head, error) {
	if checkIncident(incident) != nil {
		return store.Head{}, store.ErrNotFound
	}
	vals, err := s.c.HMGet(ctx, s.headKey(incident), "visible", "latest").Result()
	if err != nil {
		return store.Head{}, unavailable(err)
	}
	h, ok, err := parseHead(incident, vals)
	if err != nil {
		return h, err
	}
	if !ok {
		return h, fmt.Errorf("incident: %w", store.ErrNotFound)
	}
	return h, nil
}

// Stage allocates the incident's next version and returns its Stager.
func (s *Store) Stage(ctx context.Context, req store.StageRequest) (store.Stager, error) {
	if err := checkIncident(req.Incident); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	at := req.At
	if at.IsZero() {
		at = s.now()
	}
	info := infoJSON{CreatedBy: req.CreatedBy, CreatedAt: unixNano(at), Source: req.Source}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	// The id goes into the set first: an incident is never allocated
	// without being listed.
	if err := s.c.SAdd(ctx, s.incidentsKey(), req.Incident).Err(); err != nil {
		return nil, unavailable(err)
	}
	n, err := s.runScript(ctx, stageScript, []string{s.headKey(req.Incident), s.versionsKey(req.Incident)}, b, s.pinBits)
	if err != nil {
		return nil, err
	}
	v, ok := n.(int64)
	if !ok || v <= 0 {
		return nil, fmt.Errorf("%w: unexpected version allocation reply", store.ErrUnavailable)
	}
	return &stager{s: s, inc: req.Incident, v: uint64(v), info: info, bits: -1}, nil
}

// Versions lists every version of an incident, oldest first.
func (s *Store) Versions(ctx context.Context, incident string) ([]store.VersionInfo, error) {
	if checkIncident(incident) != nil {
		return nil, store.ErrNotFound
	}
	var head *redis.SliceCmd
	var all *redis.MapStringStringCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		head = p.HMGet(ctx, s.headKey(incident), "visible", "latest")
		all = p.HGetAll(ctx, s.versionsKey(incident))
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	if _, ok, err := parseHead(incident, head.Val()); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("incident: %w", store.ErrNotFound)
	}
	fields := all.Val()
	var out []store.VersionInfo
	for f, info := range fields {
		if strings.IndexByte(f, ':') >= 0 {
			continue
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			continue
		}
		vi, err := decodeInfo(incident, v, info, fields[f+":state"], fields[f+":pub"])
		if err != nil {
			return nil, err
		}
		out = append(out, vi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Version returns one version's info and manifest.
func (s *Store) Version(ctx context.Context, incident string, version uint64) (store.VersionInfo, store.Manifest, error) {
	if checkIncident(incident) != nil {
		return store.VersionInfo{}, store.Manifest{}, store.ErrNotFound
	}
	var fields *redis.SliceCmd
	var man *redis.StringCmd
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HMGet(ctx, s.versionsKey(incident), vfield(version, ""), vfield(version, ":state"), vfield(version, ":pub"))
		man = p.Get(ctx, s.manifestKey(incident, version))
		return nil
	})
	if err := cmdErr(cmds, err); err != nil {
		return store.VersionInfo{}, store.Manifest{}, err
	}
	vals := fields.Val()
	if len(vals) != 3 || vals[0] == nil || vals[1] == nil {
		return store.VersionInfo{}, store.Manifest{}, fmt.Errorf("version: %w", store.ErrNotFound)
	}
	pub, _ := vals[2].(string)
	vi, err := decodeInfo(incident, version, vals[0].(string), vals[1].(string), pub)
	if err != nil {
		return vi, store.Manifest{}, err
	}
	var m store.Manifest
	if b, err := man.Bytes(); err == nil {
		var mj manifestJSON
		if err := json.Unmarshal(b, &mj); err != nil {
			return vi, m, fmt.Errorf("%w: corrupt manifest", store.ErrUnavailable)
		}
		m = store.Manifest{Spec: mj.Spec, Cohorts: mj.Cohorts, Practices: mj.Practices}
	}
	return vi, m, nil
}

// Publish makes a staged version visible by compare-and-set on the visible
// version (see publishScript). With WithWait, it returns only after the
// replicas acknowledged the flip.
func (s *Store) Publish(ctx context.Context, req store.PublishRequest) (store.VersionInfo, error) {
	if checkIncident(req.Incident) != nil {
		return store.VersionInfo{}, store.ErrNotFound
	}
	if req.At.IsZero() {
		req.At = s.now()
	}
	pub, err := json.Marshal(pubJSON{By: req.Actor, At: unixNano(req.At)})
	if err != nil {
		return store.VersionInfo{}, err
	}
	msg := req.Incident + " " + strconv.FormatUint(req.Version, 10)
	res, err := s.runScript(ctx, publishScript, []string{s.headKey(req.Incident), s.versionsKey(req.Incident)},
		req.Version, req.ExpectVisible, pub, s.channel(), msg)
	if err != nil {
		return store.VersionInfo{}, err
	}
	switch res {
	case "ok":
	case "notfound":
		return store.VersionInfo{}, fmt.Errorf("version: %w", store.ErrNotFound)
	case "notstaged":
		return store.VersionInfo{}, store.ErrNotStaged
	case "conflict":
		return store.VersionInfo{}, fmt.Errorf("visible version is not %d or not below %d: %w", req.ExpectVisible, req.Version, store.ErrConflict)
	default:
		return store.VersionInfo{}, fmt.Errorf("%w: unexpected publish reply", store.ErrUnavailable)
	}
	h := s.hint(req.Incident)
	for {
		cur := h.Load()
		if cur >= req.Version || h.CompareAndSwap(cur, req.Version) {
			break
		}
	}
	vi, _, err := s.Version(ctx, req.Incident, req.Version)
	return vi, err
}
