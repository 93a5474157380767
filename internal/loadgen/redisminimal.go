package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

// planFile is one subject's ReadPlan as the harness hands it to the
// minimal process (fields are binary, hence []byte: base64 in JSON).
type planFile struct {
	Head         string   `json:"head"`
	HeadFields   []string `json:"head_fields"`
	Pins         string   `json:"pins"`
	Record       string   `json:"record"`
	Field        []byte   `json:"field"`
	RecordFields [][]byte `json:"record_fields"`
}

// readPlan is a planFile ready to send.
type readPlan struct {
	head, pins, record, field string
	headFields, recordFields  []string
}

// writeReadPlans writes the reads of every token subject's status (the
// store's own key layout, see redisstore.ReadPlan) to a file in the work
// directory (mode 0600: it holds subject keys, never subject ids) for the
// minimal Redis server.
func (h *harness) writeReadPlans(ctx context.Context, dataDir string) (string, error) {
	files, err := auth.EnsureDevKeys(dataDir) // impactd created them; this only finds them
	if err != nil {
		return "", err
	}
	pepper, err := auth.LoadPepper(files.PepperFile)
	if err != nil {
		return "", err
	}
	keyer, err := auth.NewKeyer(pepper)
	if err != nil {
		return "", err
	}
	st, err := redisstore.New(redis.NewClient(&redis.Options{Addr: h.redisAt}))
	if err != nil {
		return "", err
	}
	defer st.Close()
	plans := make([]planFile, len(h.subjects))
	for i, s := range h.subjects {
		p, err := st.ReadPlan(ctx, demo.IncidentID, keyer.SubjectKey(s))
		if err != nil {
			return "", fmt.Errorf("read plan: %w", err)
		}
		plans[i] = planFile{Head: p.HeadKey, HeadFields: p.HeadFields, Pins: p.PinsKey, Record: p.RecordKey, Field: []byte(p.Field)}
		for _, f := range p.RecordFields {
			plans[i].RecordFields = append(plans[i].RecordFields, []byte(f))
		}
	}
	// The plans must name impactd's keys: every subject in the roster has
	// a record there, and no other subject does.
	c := redis.NewClient(&redis.Options{Addr: h.redisAt})
	defer c.Close()
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, pl := range plans {
			p.HMGet(ctx, pl.Record, string(pl.RecordFields[0]), string(pl.RecordFields[1]))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read plans check: %w", err)
	}
	found := 0
	for _, cmd := range cmds {
		if v := cmd.(*redis.SliceCmd).Val(); len(v) == 2 && v[0] != nil {
			found++
		}
	}
	if found != h.affected {
		return "", fmt.Errorf("read plans find %d records for %d token subjects in the roster: the plans do not name impactd's keys", found, h.affected)
	}
	raw, err := json.Marshal(plans)
	if err != nil {
		return "", err
	}
	file := filepath.Join(h.work, "read-plans.json")
	return file, os.WriteFile(file, raw, 0o600)
}

// loadReadPlans reads the file writeReadPlans wrote.
func loadReadPlans(file string) ([]readPlan, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pf []planFile
	if err := json.Unmarshal(raw, &pf); err != nil {
		return nil, fmt.Errorf("read plans: %w", err)
	}
	if len(pf) == 0 {
		return nil, errors.New("read plans: none")
	}
	out := make([]readPlan, len(pf))
	for i, p := range pf {
		if len(p.HeadFields) == 0 || len(p.RecordFields) != 2 {
			return nil, fmt.Errorf("read plan %d: malformed", i)
		}
		out[i] = readPlan{head: p.Head, pins: p.Pins, record: p.Record, field: string(p.Field), headFields: p.HeadFields}
		for _, f := range p.RecordFields {
			out[i].recordFields = append(out[i].recordFields, string(f))
		}
	}
	return out, nil
}

// redisMinimalStatus is the minimal grpc-go server plus the one Redis
// round trip a read cannot avoid while the pin lives only in Redis: per
// request one go-redis pipeline of HMGET head, HGET pin and HMGET record
// for a random token subject (the same keys impactd reads for that
// subject), then the fixed answer. No authentication, no decoding, no
// interceptors: the ceiling of a server that reads Redis once per request.
type redisMinimalStatus struct {
	impactv1.UnimplementedStatusServiceServer
	c     redis.UniversalClient
	plans []readPlan
	resp  *impactv1.GetMyStatusResponse
}

func (m *redisMinimalStatus) GetMyStatus(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
	p := &m.plans[rand.IntN(len(m.plans))]
	var (
		head, rec *redis.SliceCmd
		pin       *redis.StringCmd
	)
	_, _ = m.c.Pipelined(ctx, func(pp redis.Pipeliner) error {
		head = pp.HMGet(ctx, p.head, p.headFields...)
		pin = pp.HGet(ctx, p.pins, p.field)
		rec = pp.HMGet(ctx, p.record, p.recordFields...)
		return nil
	})
	if err := errors.Join(head.Err(), rec.Err()); err != nil || (pin.Err() != nil && !errors.Is(pin.Err(), redis.Nil)) {
		return nil, status.Error(codes.Unavailable, "redis read failed")
	}
	// The bucket's sentinel and the visible version must be there: a plan
	// that names keys the store does not have would measure nothing.
	if h, r := head.Val(), rec.Val(); len(h) == 0 || h[0] == nil || len(r) != 2 || r[1] == nil {
		return nil, status.Error(codes.FailedPrecondition, "read plan names keys Redis does not have")
	}
	return m.resp, nil
}

// newRedisMinimal connects to url (parsed as impactd parses --redis-url)
// and loads the plans.
func newRedisMinimal(url, plansFile string, resp *impactv1.GetMyStatusResponse) (*redisMinimalStatus, error) {
	plans, err := loadReadPlans(plansFile)
	if err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return &redisMinimalStatus{c: redis.NewClient(opt), plans: plans, resp: resp}, nil
}
