package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

// faultyStore fails chosen calls with store.ErrUnavailable.
type faultyStore struct {
	store.Store
	mu                       sync.Mutex
	ping, incidents, version bool
}

func (f *faultyStore) set(fn func(*faultyStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultyStore) fails(which *bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *which
}

func (f *faultyStore) Ping(ctx context.Context) error {
	if f.fails(&f.ping) {
		return store.ErrUnavailable
	}
	return f.Store.Ping(ctx)
}

func (f *faultyStore) Incidents(ctx context.Context) ([]store.Head, error) {
	if f.fails(&f.incidents) {
		return nil, store.ErrUnavailable
	}
	return f.Store.Incidents(ctx)
}

func (f *faultyStore) Version(ctx context.Context, incident string, v uint64) (store.VersionInfo, store.Manifest, error) {
	if f.fails(&f.version) {
		return store.VersionInfo{}, store.Manifest{}, store.ErrUnavailable
	}
	return f.Store.Version(ctx, incident, v)
}

// Contents of a healthStore.
const (
	empty      = iota
	stagedOnly // the demo incident, v1 staged, nothing published
	published  // the demo incident, v1 published and v2 staged
)

// healthStore opens an embedded store with the given contents.
func healthStore(t *testing.T, contents int) *faultyStore {
	t.Helper()
	st := embeddedtest.Open(t)
	if contents != empty {
		keyer, err := auth.NewKeyer(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		svc := snapshot.NewService(st, keyer)
		var spec bytes.Buffer
		if err := demo.WriteSpec(&spec); err != nil {
			t.Fatal(err)
		}
		roster := "subject_id,status,cohorts,practice_id\nh-1,affected," + demo.CohortNorthland + ",\n"
		for v := 1; v <= contents; v++ {
			info, err := svc.Upload(context.Background(), snapshot.UploadRequest{
				Incident: demo.IncidentID, Spec: spec.Bytes(), Actor: "ops",
				Roster: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(roster)), nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			if v == 1 && contents == published {
				if _, _, err := svc.Publish(context.Background(), demo.IncidentID, info.Version, 0, "ops"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return &faultyStore{Store: st}
}

func newHealthServer(t *testing.T, st store.Store, cfg Config) *Server {
	t.Helper()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminGRPCAddr, cfg.AdminHTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.UploadDir = t.TempDir()
	srv, err := New(cfg, Deps{Store: st, Catalog: snapshot.NewCatalog(st, 4), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestProbe: ready means the store answers and every served incident's
// visible version loads; an incident with nothing published yet does not
// block readiness.
func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name     string
		contents int
		fault    func(*faultyStore)
		ready    bool
	}{
		{"empty store", empty, nil, true},
		{"published incident", published, nil, true},
		{"store unreachable", published, func(f *faultyStore) { f.ping = true }, false},
		{"incidents unreadable", published, func(f *faultyStore) { f.incidents = true }, false},
		{"visible version not loadable", published, func(f *faultyStore) { f.version = true }, false},
		{"nothing published yet, versions unreadable", stagedOnly, func(f *faultyStore) { f.version = true }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := healthStore(t, tc.contents)
			if tc.fault != nil {
				st.set(tc.fault)
			}
			srv := newHealthServer(t, st, Config{})
			t.Cleanup(srv.closeListeners)
			err := srv.probe(context.Background())
			if (err == nil) != tc.ready {
				t.Fatalf("probe: %v, want ready=%v", err, tc.ready)
			}
			if err != nil && !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("probe error %v does not wrap the store's", err)
			}
		})
	}
}

// run serves srv until cancel is called; done yields Run's result.
func run(srv *Server) (cancel func(), done <-chan error) {
	ctx, c := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- srv.Run(ctx) }()
	return c, ch
}

func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never: %s", what)
}

func readyz(t *testing.T, addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestReadinessFollowsStore: grpc.health.v1 answers per service on both
// listeners, and readiness (gRPC and /readyz) follows the store; /healthz
// stays up.
func TestReadinessFollowsStore(t *testing.T) {
	st := healthStore(t, published)
	srv := newHealthServer(t, st, Config{ReadyInterval: 20 * time.Millisecond})
	cancel, done := run(srv)
	defer func() { cancel(); <-done }()
	a := srv.Addrs()
	public, admin := healthClient(t, a.GRPC), healthClient(t, a.AdminGRPC)
	status := func(c healthpb.HealthClient, svc string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		return r.Status
	}
	allServing := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			for _, s := range []string{"", impactv1.StatusService_ServiceDesc.ServiceName} {
				if status(public, s) != want {
					return false
				}
			}
			for _, s := range []string{"", impactv1.SnapshotService_ServiceDesc.ServiceName, impactv1.NoticeService_ServiceDesc.ServiceName} {
				if status(admin, s) != want {
					return false
				}
			}
			code := http.StatusOK
			if want != healthpb.HealthCheckResponse_SERVING {
				code = http.StatusServiceUnavailable
			}
			return readyz(t, a.HTTP) == code && readyz(t, a.AdminHTTP) == code
		}
	}
	eventually(t, "serving", allServing(healthpb.HealthCheckResponse_SERVING))
	// Services a listener does not serve are unknown to its health service.
	if _, err := public.Check(context.Background(), &healthpb.HealthCheckRequest{Service: impactv1.NoticeService_ServiceDesc.ServiceName}); err == nil {
		t.Error("the patient listener reports health of the notice service")
	}

	st.set(func(f *faultyStore) { f.ping = true })
	eventually(t, "not serving with the store down", allServing(healthpb.HealthCheckResponse_NOT_SERVING))
	resp, err := http.Get("http://" + a.HTTP + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz with the store down: %v %v", resp, err)
	}
	_ = resp.Body.Close()

	st.set(func(f *faultyStore) { f.ping = false })
	eventually(t, "serving again", allServing(healthpb.HealthCheckResponse_SERVING))
}

// TestDrainNotServing: on shutdown, readiness turns NOT_SERVING while
// calls in flight still run, before the listeners close, and a probe that
// finishes late cannot turn it back.
func TestDrainNotServing(t *testing.T) {
	st := healthStore(t, published)
	srv := newHealthServer(t, st, Config{ReadyInterval: 20 * time.Millisecond, ShutdownTimeout: time.Minute})
	cancel, done := run(srv)
	a := srv.Addrs()

	// A Watch stream is a call in flight: graceful stop waits for it.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	w, err := healthClient(t, a.GRPC).Watch(wctx, &healthpb.HealthCheckRequest{Service: impactv1.StatusService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}

	cancel()
	r, err := w.Recv()
	if err != nil {
		t.Fatalf("watch during drain: %v", err)
	}
	if r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status during drain: %v", r.Status)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a call was in flight", err)
	default:
	}
	if srv.Ready() {
		t.Fatal("Ready() during drain")
	}
	srv.setServing(true) // a probe finishing late
	if srv.Ready() {
		t.Fatal("a late probe made a draining server ready")
	}

	wcancel() // the last call ends: the drain completes
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
