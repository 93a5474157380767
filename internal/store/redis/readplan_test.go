package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/storetest"
)

// sentCommands records the arguments of every command sent, pipelined or
// not.
type sentCommands struct {
	mu   sync.Mutex
	cmds [][]any
}

func (h *sentCommands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *sentCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd)
		return next(ctx, cmd)
	}
}
func (h *sentCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.add(c)
		}
		return next(ctx, cmds)
	}
}
func (h *sentCommands) add(c redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cmds = append(h.cmds, slices.Clone(c.Args()))
}
func (h *sentCommands) take() [][]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.cmds
	h.cmds = nil
	return out
}

// The plan names the keys and fields Read itself reads, and sending it
// returns the subject's pin and record.
func TestReadPlanIsReadsPipeline(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	hook := &sentCommands{}
	c.AddHook(hook)
	s := newStore(t, c)
	const inc = "plan"
	m := testManifest(1)
	e := genEntries(21, 3000, m)
	if _, err := s.ReadPlan(ctx, inc, e[0].Key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("plan of an unknown incident: %v, want ErrNotFound", err)
	}
	storetest.Load(t, s, inc, m, e, 1000)
	storetest.Publish(t, s, inc, 1, 0)
	pin := storetest.PinAt(1, e[0].Record, "n-plan")
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, pin, store.IdemKey{1}); err != nil {
		t.Fatal(err)
	}
	storetest.Read(t, s, inc, e[1].Key, nil) // learns the layout: the next reads are one pipeline
	absent := randomKey(rand.New(rand.NewPCG(21, 21)))
	for _, k := range []store.Key{e[0].Key, e[1].Key, absent} {
		p, err := s.ReadPlan(ctx, inc, k)
		if err != nil {
			t.Fatal(err)
		}
		hook.take()
		storetest.Read(t, s, inc, k, nil)
		sent := map[string]bool{}
		for _, a := range hook.take() {
			sent[fmt.Sprint(a...)] = true
		}
		want := [][]any{
			{"hmget", p.HeadKey, p.HeadFields[0], p.HeadFields[1]},
			{"hget", p.PinsKey, p.Field},
			{"hmget", p.RecordKey, p.RecordFields[0], p.RecordFields[1]},
		}
		for _, w := range want {
			if !sent[fmt.Sprint(w...)] {
				t.Errorf("Read did not send %q (it sent %d commands)", w[:2], len(sent))
			}
		}

		vals, err := c.HMGet(ctx, p.RecordKey, p.RecordFields...).Result()
		if err != nil || len(vals) != 2 || vals[1] == nil {
			t.Fatalf("record read %v, %v: want the bucket's sentinel", vals, err)
		}
		pinRaw, err := c.HGet(ctx, p.PinsKey, p.Field).Bytes()
		switch k {
		case e[0].Key:
			if got, derr := store.DecodePin(pinRaw); err != nil || derr != nil || got.NoticeID != pin.NoticeID {
				t.Errorf("pin read %+v, %v, %v", got, err, derr)
			}
		default:
			if !errors.Is(err, redis.Nil) {
				t.Errorf("pin of an unpinned subject: %q, %v", pinRaw, err)
			}
		}
		if (vals[0] == nil) != (k == absent) {
			t.Errorf("record of %x: %v", k[:4], vals[0])
		}
	}
}
