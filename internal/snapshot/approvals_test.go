package snapshot

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func wantReason(t *testing.T, what string, err error, reason string) {
	t.Helper()
	var re *ReviewError
	if !errors.As(err, &re) || re.Reason != reason {
		t.Fatalf("%s: %v, want a review error %s", what, err, reason)
	}
}

func TestApprovals(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clk := &clock{t: t0}
	svc := NewService(st, testKeyer, WithClock(clk.now), WithApprovals(3, time.Hour))
	upload(t, svc, "subject_id,status,cohorts\nalice,affected,northland\n")

	out, err := svc.RequestPublish(ctx, PublishRequest{Incident: incident, Version: 1, ExpectVisible: 0, Actor: "ops-alice"})
	if err != nil || out.Pending == nil || out.Pending.RequestedBy != "ops-alice" || !out.Pending.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("request: %+v %v", out, err)
	}
	if h, _ := st.Head(ctx, incident); h.Visible != 0 {
		t.Fatal("a request published")
	}
	_, _, err = svc.Approve(ctx, incident, 1, "ops-alice")
	wantReason(t, "own approval", err, ReasonOwnRequest)
	_, _, err = svc.Approve(ctx, incident, 7, "ops-bob")
	wantReason(t, "approval of an unknown request", err, ReasonRequestUnknown)
	r, out, err := svc.Approve(ctx, incident, 1, "ops-bob")
	if err != nil || out.Pending == nil || len(r.ApprovedBy) != 1 {
		t.Fatalf("first approval of two: %+v %+v %v", r, out, err)
	}
	_, _, err = svc.Approve(ctx, incident, 1, "ops-bob")
	wantReason(t, "a second approval by the same admin", err, ReasonAlreadyApproved)
	r, out, err = svc.Approve(ctx, incident, 1, "ops-carol")
	if err != nil || out.Pending != nil || out.Info.Version != 1 || out.Info.PublishedBy != "ops-carol" {
		t.Fatalf("last approval: %+v %+v %v", r, out, err)
	}
	if rs, _ := svc.PublishRequests(ctx, incident); len(rs) != 0 {
		t.Fatalf("a published request is still listed: %+v", rs)
	}

	// A request lapses after its ttl.
	upload(t, svc, "subject_id,status,cohorts\nalice,affected,northland\nbob,affected,referrals\n")
	if _, err := svc.RequestPublish(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, Actor: "ops-alice"}); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Hour)
	rs, err := svc.PublishRequests(ctx, incident)
	if err != nil || len(rs) != 1 || rs[0].Lapsed == "" {
		t.Fatalf("an expired request is listed as lapsed: %+v %v", rs, err)
	}
	_, _, err = svc.Approve(ctx, incident, 2, "ops-bob")
	wantReason(t, "approval of an expired request", err, ReasonRequestLapsed)
	if h, _ := st.Head(ctx, incident); h.Visible != 1 {
		t.Fatalf("a lapsed request published v%d", h.Visible)
	}
	// Requested again, it can be approved (and a live request for the same
	// version cannot be made twice).
	if _, err := svc.RequestPublish(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, Actor: "ops-alice"}); err != nil {
		t.Fatal(err)
	}
	_, err = svc.RequestPublish(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, Actor: "ops-dan"})
	wantReason(t, "a second live request", err, ReasonRequestPending)

	es, err := audit.New(svc.st).List(ctx, incident, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		seen[e.Action+" "+e.Outcome]++
	}
	for _, want := range []string{"publish_request ok", "publish_approval ok", "publish_approval own_publish_request",
		"publish_approval already_approved", "publish_approval publish_request_unknown", "publish_approval publish_request_lapsed",
		"publish_lapse ok", "publish ok", "publish_request publish_request_pending"} {
		if seen[want] == 0 {
			t.Errorf("no %q audit event: %v", want, seen)
		}
	}
}

// TestApprovalsSurviveRestart: a pending request is in the store: a
// restarted process (embedded store reopened, Redis restarted) lists it and
// its approval publishes.
func TestApprovalsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	engines := map[string]func(t *testing.T) (open func() store.Store, restart func()){
		"embedded": func(t *testing.T) (func() store.Store, func()) {
			path := filepath.Join(t.TempDir(), "impact.db")
			var cur *embedded.Store
			open := func() store.Store {
				st, err := embedded.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				cur = st
				t.Cleanup(func() { st.Close() })
				return st
			}
			return open, func() { cur.Close() }
		},
		"redis": func(t *testing.T) (func() store.Store, func()) {
			srv := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
			open := func() store.Store {
				st, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			}
			return open, srv.Restart
		},
	}
	for name, engine := range engines {
		t.Run(name, func(t *testing.T) {
			open, restart := engine(t)
			svc := newTestService(t, open(), WithApprovals(2, 0))
			upload(t, svc, "subject_id,status,cohorts\nalice,affected,northland\n")
			if _, err := svc.RequestPublish(ctx, PublishRequest{Incident: incident, Version: 1, Actor: "ops-alice"}); err != nil {
				t.Fatal(err)
			}
			restart()
			st := open()
			svc = newTestService(t, st, WithApprovals(2, 0))
			rs, err := svc.PublishRequests(ctx, incident)
			if err != nil || len(rs) != 1 || rs[0].RequestedBy != "ops-alice" || rs[0].Lapsed != "" {
				t.Fatalf("requests after the restart: %+v %v", rs, err)
			}
			if _, out, err := svc.Approve(ctx, incident, 1, "ops-bob"); err != nil || out.Info.Version != 1 {
				t.Fatalf("approval after the restart: %+v %v", out, err)
			}
			if h, err := st.Head(ctx, incident); err != nil || h.Visible != 1 {
				t.Fatalf("head after the approval: %+v %v", h, err)
			}
		})
	}
}
