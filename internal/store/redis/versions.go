package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

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
	lease := store.StageLease(req.Lease)
	sent := time.Now()
	n, err := s.runScript(ctx, stageScript, []string{s.headKey(req.Incident), s.versionsKey(req.Incident)}, b, s.pinBits, lease.Milliseconds())
	if err != nil {
		return nil, err
	}
	v, ok := n.(int64)
	if !ok || v <= 0 {
		return nil, fmt.Errorf("%w: unexpected version allocation reply", store.ErrUnavailable)
	}
	st := &stager{s: s, inc: req.Incident, v: uint64(v), info: info, bits: -1, pacer: req.Pacer}
	st.lease = store.StartLease(ctx, lease, sent, func(ctx context.Context) (bool, error) {
		return s.renewLease(ctx, req.Incident, uint64(v), lease)
	})
	return st, nil
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
		m = store.Manifest{Spec: mj.Spec, Cohorts: mj.Cohorts, Practices: mj.Practices, PracticeCounts: mj.PracticeCounts}
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
	res, err := s.runScript(ctx, publishScript, s.feedKeys(s.headKey(req.Incident), s.versionsKey(req.Incident)),
		s.feedArgs(req.Incident, req.Version, req.ExpectVisible, pub, s.channel(), msg)...)
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

// readBuckets reads every bucket of a version, readChunk buckets per
// pipeline, and calls fn with each chunk's entries. With ordered, chunks
// arrive in bucket order (one reader ahead) and each bucket is sorted by
// key, so entries arrive in key order; otherwise fn may be called
// concurrently, in no order. A bucket without its sentinel
// fails the read: the version's records are not all there.
func (s *Store) readBuckets(ctx context.Context, inc string, v uint64, bits uint8, fn func([]store.Entry) error, ordered bool) error {
	n := 1 << bits
	chunks := (n + readChunk - 1) / readChunk
	if err := dumpScript.Load(ctx, s.c).Err(); err != nil {
		return unavailable(err)
	}
	read := func(i int) ([]store.Entry, error) {
		lo, hi := i*readChunk, min(n, (i+1)*readChunk)
		cmds := make([]*redis.Cmd, 0, hi-lo)
		_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for b := lo; b < hi; b++ {
				cmds = append(cmds, dumpScript.EvalSha(ctx, p, []string{s.recordsKey(inc, v, uint32(b))}))
			}
			return nil
		})
		if err != nil {
			return nil, unavailable(err)
		}
		// For each bucket: sentinel flag, field count, blob.
		reply := make([]any, 0, 3*len(cmds))
		for _, c := range cmds {
			r, _ := c.Val().([]any)
			reply = append(reply, r...)
		}
		if len(reply) != 3*len(cmds) {
			return nil, fmt.Errorf("%w: unexpected bucket reply", store.ErrUnavailable)
		}
		// One allocation for the chunk's entries (the field counts say how
		// many, the blobs bound it): appending would copy them over and over.
		total := 0
		for j := range cmds {
			n, _ := reply[3*j+1].(int64)
			blob, _ := reply[3*j+2].(string)
			total += max(0, min(int(n)-1, len(blob)/store.KeySize))
		}
		out := make([]store.Entry, 0, total)
		for j := range cmds {
			if reply[3*j] != int64(1) {
				return nil, fmt.Errorf("%w: records of version %d are incomplete", store.ErrUnavailable, v)
			}
			fields, _ := reply[3*j+1].(int64)
			str, _ := reply[3*j+2].(string)
			blob := []byte(str)
			start := len(out)
			for len(blob) > 0 {
				if len(blob) < store.KeySize {
					return nil, fmt.Errorf("%w: malformed bucket", store.ErrVerify)
				}
				var e store.Entry
				copy(e.Key[:], blob)
				r, rest, err := store.DecodeRecord(blob[store.KeySize:])
				if err != nil {
					return nil, fmt.Errorf("%w: malformed record", store.ErrVerify)
				}
				e.Record, blob = r, rest
				if bucket(e.Key, bits) != uint32(lo+j) {
					return nil, fmt.Errorf("%w: record in the wrong bucket", store.ErrVerify)
				}
				out = append(out, e)
			}
			if int64(len(out)-start) != fields-1 {
				return nil, fmt.Errorf("%w: malformed bucket", store.ErrVerify)
			}
			if ordered {
				slices.SortFunc(out[start:], func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
			}
		}
		return out, nil
	}
	if !ordered {
		return parallel(chunks, func(i int) error {
			entries, err := read(i)
			if err != nil {
				return err
			}
			return fn(entries)
		})
	}
	// Ordered: one goroutine reads ahead of fn.
	type result struct {
		entries []store.Entry
		err     error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, 1)
	go func() {
		defer close(results)
		for i := 0; i < chunks; i++ {
			entries, err := read(i)
			select {
			case results <- result{entries, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for r := range results {
		if r.err != nil {
			return r.err
		}
		if err := fn(r.entries); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Scan calls fn for every entry of a staged or published version in
// increasing key order.
func (s *Store) Scan(ctx context.Context, incident string, version uint64, fn func(store.Entry) error) error {
	bits, err := s.readableBits(ctx, incident, version)
	if err != nil {
		return err
	}
	return s.readBuckets(ctx, incident, version, bits, func(entries []store.Entry) error {
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}, true)
}

// readableBits checks that a version is staged or published and returns its
// bucket bits.
func (s *Store) readableBits(ctx context.Context, incident string, version uint64) (uint8, error) {
	if checkIncident(incident) != nil {
		return 0, store.ErrNotFound
	}
	vals, err := s.c.HMGet(ctx, s.versionsKey(incident), vfield(version, ":state"), vfield(version, ":bits")).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	if len(vals) != 2 || vals[0] == nil {
		return 0, fmt.Errorf("version: %w", store.ErrNotFound)
	}
	if st := vals[0].(string); st != "2" && st != "3" {
		return 0, fmt.Errorf("version %d: %w", version, store.ErrNotStaged)
	}
	str, _ := vals[1].(string)
	bits, err := parseBits(str)
	if err != nil {
		return 0, err
	}
	s.bitsCache.Store(versionRef{incident, version}, bits)
	return bits, nil
}
