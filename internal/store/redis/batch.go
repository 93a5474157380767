package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// readManyChunk is how many keys one ReadMany pipeline reads.
const readManyChunk = 4096

// ReadMany returns the views of keys: the head first, then, per chunk of
// keys, one pipeline that reads the records at that visible version, the
// pins and the tombstones, grouped by bucket (one HMGET per record bucket,
// pin bucket and tombstone bucket touched, instead of one command per
// key). Every record comes from the visible version the head named; a
// bucket of it that is gone (the version was deleted meanwhile) fails the
// read, never answers "absent".
func (s *Store) ReadMany(ctx context.Context, incident string, keys []store.Key) ([]store.View, error) {
	pinBits, err := s.pinBitsOf(ctx, incident)
	if err != nil {
		return nil, err
	}
	h, err := s.Head(ctx, incident)
	if err != nil {
		return nil, err
	}
	var bits uint8
	if h.Visible != 0 {
		b, set, err := s.bitsOf(ctx, incident, h.Visible)
		if err != nil {
			return nil, err
		}
		if !set {
			return nil, fmt.Errorf("%w: visible version %d has no records", store.ErrUnavailable, h.Visible)
		}
		bits = b
	}
	out := make([]store.View, len(keys))
	for lo := 0; lo < len(keys); lo += readManyChunk {
		if err := s.readManyChunk(ctx, incident, h.Visible, bits, pinBits, keys[lo:min(len(keys), lo+readManyChunk)], out[lo:]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hashRead is one HMGET of some keys' fields in one hash.
type hashRead struct {
	idx []int // positions in the chunk
	cmd *redis.SliceCmd
}

// groupRead adds, for each key, its field to the read of its hash.
func groupRead(keys []store.Key, hash func(store.Key) string) (map[string]*hashRead, []string) {
	m := make(map[string]*hashRead)
	var order []string
	for i, k := range keys {
		name := hash(k)
		g, ok := m[name]
		if !ok {
			g = &hashRead{}
			m[name] = g
			order = append(order, name)
		}
		g.idx = append(g.idx, i)
	}
	return m, order
}

func (s *Store) readManyChunk(ctx context.Context, incident string, visible uint64, bits, pinBits uint8, keys []store.Key, out []store.View) error {
	var recs map[string]*hashRead
	var recOrder []string
	if visible != 0 {
		recs, recOrder = groupRead(keys, func(k store.Key) string { return s.recordsKey(incident, visible, bucket(k, bits)) })
	}
	pins, pinOrder := groupRead(keys, func(k store.Key) string { return s.pinsKey(incident, bucket(k, pinBits)) })
	tombs, tombOrder := groupRead(keys, s.tombKey)
	fields := func(g *hashRead, sentinel bool) []string {
		f := make([]string, 0, len(g.idx)+1)
		for _, i := range g.idx {
			f = append(f, string(keys[i][:]))
		}
		if sentinel {
			f = append(f, sentinelName)
		}
		return f
	}
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, name := range recOrder {
			recs[name].cmd = p.HMGet(ctx, name, fields(recs[name], true)...)
		}
		for _, name := range pinOrder {
			pins[name].cmd = p.HMGet(ctx, name, fields(pins[name], false)...)
		}
		for _, name := range tombOrder {
			tombs[name].cmd = p.HMGet(ctx, name, fields(tombs[name], false)...)
		}
		return nil
	})
	if err := cmdErr(cmds, err); err != nil {
		return err
	}
	for i := range keys {
		out[i] = store.View{Visible: visible}
	}
	for _, g := range tombs {
		for j, v := range g.cmd.Val() {
			if v != nil {
				out[g.idx[j]].Erased = true
			}
		}
	}
	for _, g := range recs {
		vals := g.cmd.Val()
		if len(vals) != len(g.idx)+1 || vals[len(vals)-1] == nil {
			return fmt.Errorf("%w: records of version %d are missing", store.ErrUnavailable, visible)
		}
		for j, i := range g.idx {
			if out[i].Erased {
				continue
			}
			r, err := recordOf([]any{vals[j], vals[len(vals)-1]}, visible)
			if err != nil {
				return err
			}
			out[i].Record = r
		}
	}
	for _, g := range pins {
		for j, v := range g.cmd.Val() {
			i := g.idx[j]
			if v == nil || out[i].Erased {
				continue
			}
			str, ok := v.(string)
			if !ok {
				return fmt.Errorf("%w: corrupt pin", store.ErrUnavailable)
			}
			p, err := store.DecodePin([]byte(str))
			if err != nil {
				return fmt.Errorf("%w: corrupt pin", store.ErrUnavailable)
			}
			out[i].Pin = &p
		}
	}
	return nil
}
