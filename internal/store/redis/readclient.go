package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// The reads that still go to Redis (a replica whose lease is not valid, an
// at_least_version ahead of it, a claim's decision, and every read on a
// Cluster) come in bursts: when a replica stops serving from memory, all of
// its patient reads fall back at once. Read's pipeline then goes through a
// rueidis client, which auto-pipelines: the pipelines of concurrent reads
// share connections and round trips instead of each taking a pooled
// connection and a round trip of its own. A read still fails at the
// request deadline (readAutoPipelined, TestAutoPipelinedReadEndsAtDeadline;
// go-redis's AutoPipeliner, measured first, held admitted commands for
// seconds past it).
//
// Only the read pipeline uses it: scripts and other commands stay on
// go-redis (scripts on a client that never retries them).

// NewReadClient builds the auto-pipelining client of c's topology for
// Read's pipeline (see WithReadClient). It connects at once: call it when
// Redis is expected to answer. Client-side caching is off (a cached pin
// could be older than an acknowledged claim), and a Cluster client reads
// from primaries only, as the go-redis client does.
func (c Config) NewReadClient() (rueidis.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opt := rueidis.ClientOption{Password: c.Password}
	switch {
	case len(c.ClusterAddrs) > 0:
		opt.InitAddress = c.ClusterAddrs
	case len(c.SentinelAddrs) > 0:
		opt.InitAddress = c.SentinelAddrs
		opt.Sentinel = rueidis.SentinelOption{MasterSet: c.SentinelMaster, Dialer: net.Dialer{Timeout: dialTimeout}}
	default:
		var err error
		if opt, err = rueidis.ParseURL(c.URL); err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		opt.ForceSingleClient = true // a standalone server: do not probe for a Cluster
	}
	opt.DisableCache = true
	opt.Dialer.Timeout = dialTimeout
	opt.ConnWriteTimeout = ioTimeout
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, unavailable(err)
	}
	return rc, nil
}

// WithReadClient sends Read's pipeline through rc, an auto-pipelining
// rueidis client on the same Redis as the store's go-redis client (built by
// Config.NewReadClient; Open adds it). It must not serve cached replies. The
// Store owns rc: Close closes it. Without it, Read sends one go-redis
// pipeline per read.
func WithReadClient(rc rueidis.Client) Option {
	return func(s *Store) error {
		if rc == nil {
			return errors.New("redisstore: nil read client")
		}
		s.rc = rc
		return nil
	}
}

// readQuery is what one Read asks Redis, in one pipeline: the incident's
// head, the subject's tombstone and pin, its record at the cached visible
// version (recKey, when the cache knows one) and its idempotency record
// (idemKey, for a claim's replay).
type readQuery struct {
	head, tomb, pins, recKey, idemKey string
	field, idemField                  string
}

// readReply is Redis's answer to a readQuery. head and rec are HMGET
// replies (nil for an absent field); pin and idem are nil when absent.
type readReply struct {
	head      []any
	tomb      bool
	rec       []any
	pin, idem []byte
}

// readPipeline sends q in one round trip: through the auto-pipelining
// client when there is one, else as a go-redis pipeline.
func (s *Store) readPipeline(ctx context.Context, q readQuery) (readReply, error) {
	if s.rc != nil {
		return s.readAutoPipelined(ctx, q)
	}
	var (
		headCmd, recCmd *redis.SliceCmd
		pinCmd, idemCmd *redis.StringCmd
		tombCmd         *redis.BoolCmd
	)
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		headCmd = p.HMGet(ctx, q.head, "visible", "latest")
		tombCmd = p.HExists(ctx, q.tomb, q.field)
		if q.recKey != "" {
			recCmd = p.HMGet(ctx, q.recKey, q.field, sentinelName)
		}
		pinCmd = p.HGet(ctx, q.pins, q.field)
		if q.idemKey != "" {
			idemCmd = p.HGet(ctx, q.idemKey, q.idemField)
		}
		return nil
	})
	if err := cmdErr(cmds, err); err != nil {
		return readReply{}, err
	}
	r := readReply{head: headCmd.Val(), tomb: tombCmd.Val(), pin: optionalBytes(pinCmd)}
	if recCmd != nil {
		r.rec = recCmd.Val()
	}
	if idemCmd != nil {
		r.idem = optionalBytes(idemCmd)
	}
	return r, nil
}

// optionalBytes is the value of an HGET that cmdErr found without error:
// nil when the field is absent.
func optionalBytes(c *redis.StringCmd) []byte {
	b, err := c.Bytes()
	if err != nil {
		return nil
	}
	return b
}

// readAutoPipelined sends q through the auto-pipelining client and returns
// at ctx's end at the latest. rueidis returns a queued command's caller at
// its context's end, but not a caller that waits for a connection another
// caller is opening, nor one inside its retry of a read-only command after
// a connection reset (measured in the chaos harness's latency scenario:
// reads returned up to 0.7 s past a 2 s deadline; without its retries, five
// times as many reads failed on each reset). So the pipeline runs on its own
// goroutine, and the read fails closed at the deadline while rueidis
// finishes; that goroutine lives no longer than a request blocked in the
// client would.
func (s *Store) readAutoPipelined(ctx context.Context, q readQuery) (readReply, error) {
	if ctx.Done() == nil {
		return s.doAutoPipelined(ctx, q)
	}
	type result struct {
		r   readReply
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := s.doAutoPipelined(ctx, q)
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		return res.r, res.err
	case <-ctx.Done():
		return readReply{}, unavailable(ctx.Err())
	}
}

func (s *Store) doAutoPipelined(ctx context.Context, q readQuery) (readReply, error) {
	b := s.rc.B()
	cmds := make(rueidis.Commands, 0, 5)
	cmds = append(cmds,
		b.Hmget().Key(q.head).Field("visible", "latest").Build(),
		b.Hexists().Key(q.tomb).Field(q.field).Build(),
		b.Hget().Key(q.pins).Field(q.field).Build())
	if q.recKey != "" {
		cmds = append(cmds, b.Hmget().Key(q.recKey).Field(q.field, sentinelName).Build())
	}
	if q.idemKey != "" {
		cmds = append(cmds, b.Hget().Key(q.idemKey).Field(q.idemField).Build())
	}
	res := s.rc.DoMulti(ctx, cmds...)
	var r readReply
	var err error
	if r.head, err = hmgetOf(res[0]); err != nil {
		return readReply{}, err
	}
	n, err := res[1].AsInt64()
	if err != nil {
		return readReply{}, unavailable(err)
	}
	r.tomb = n == 1
	if r.pin, err = hgetOf(res[2]); err != nil {
		return readReply{}, err
	}
	i := 3
	if q.recKey != "" {
		if r.rec, err = hmgetOf(res[i]); err != nil {
			return readReply{}, err
		}
		i++
	}
	if q.idemKey != "" {
		if r.idem, err = hgetOf(res[i]); err != nil {
			return readReply{}, err
		}
	}
	return r, nil
}

// hmgetOf turns an HMGET reply into go-redis's form: a string per present
// field, nil per absent one.
func hmgetOf(res rueidis.RedisResult) ([]any, error) {
	msgs, err := res.ToArray()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]any, len(msgs))
	for i, m := range msgs {
		if m.IsNil() {
			continue
		}
		v, err := m.ToString()
		if err != nil {
			return nil, unavailable(err)
		}
		out[i] = v
	}
	return out, nil
}

// hgetOf is an HGET reply: nil when the field is absent.
func hgetOf(res rueidis.RedisResult) ([]byte, error) {
	b, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if b == nil {
		b = []byte{} // present but empty: corrupt, not absent (decodeOptionalPin refuses it)
	}
	return b, nil
}
