package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/testclient"
	"github.com/impact-health/impact/internal/testutil/testproc"
)

// startTimeout bounds how long impactd may take to become ready (a -race
// build on a busy 2-core machine starts slowly).
const startTimeout = 45 * time.Second

// impactd is one impactd process owned by a test.
type impactd struct {
	t       *testing.T
	name    string
	dataDir string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	logs    *testclient.LogBuffer

	grpcAddr, httpAddr, adminGRPCAddr, adminHTTPAddr string

	public, admin *grpc.ClientConn
	adminToken    string
}

// startImpactd starts impactd --dev on dataDir (dev keys are shared by every
// process on the same dataDir) with extra flags, waits until /readyz answers
// 200 and stops it when the test ends. A port taken between picking and
// binding is retried with new ports.
func startImpactd(t *testing.T, name, dataDir string, extra ...string) *impactd {
	t.Helper()
	for attempt := 0; ; attempt++ {
		p, err := launch(t, name, dataDir, extra)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		err = p.waitReady(startTimeout)
		if err == nil {
			p.connect()
			return p
		}
		if attempt < 3 && strings.Contains(p.logs.String(), "address already in use") {
			continue
		}
		t.Fatalf("%s: %v\nlogs:\n%s", name, err, tail(p.logs.String(), 4000))
	}
}

// startImpactds starts one impactd per name, all with the same dataDir and
// flags, and waits until every one is ready (they start side by side).
func startImpactds(t *testing.T, dataDir string, names []string, extra ...string) []*impactd {
	t.Helper()
	ps := make([]*impactd, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		p, err := launch(t, name, dataDir, extra)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ps[i] = p
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.waitReady(startTimeout) }()
	}
	wg.Wait()
	for i, p := range ps {
		if errs[i] != nil {
			t.Fatalf("%s: %v\nlogs:\n%s", p.name, errs[i], tail(p.logs.String(), 4000))
		}
		p.connect()
	}
	return ps
}

func launch(t *testing.T, name, dataDir string, extra []string) (*impactd, error) {
	ports, err := testproc.FreeAddrs(4)
	if err != nil {
		return nil, err
	}
	p := &impactd{
		t: t, name: name, dataDir: dataDir, logs: &testclient.LogBuffer{}, done: make(chan struct{}),
		grpcAddr: ports[0], httpAddr: ports[1], adminGRPCAddr: ports[2], adminHTTPAddr: ports[3],
	}
	args := []string{
		"--dev", "--data-dir", dataDir, "--upload-dir", t.TempDir(),
		"--grpc-addr", p.grpcAddr, "--http-addr", p.httpAddr,
		"--admin-grpc-addr", p.adminGRPCAddr, "--admin-http-addr", p.adminHTTPAddr,
		"--shutdown-timeout", "2s",
	}
	p.cmd = exec.Command(impactdBin, append(args, extra...)...)
	p.cmd.Env = testproc.CleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	setProcAttr(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s logs (tail):\n%s", name, tail(p.logs.String(), 4000))
		}
	})
	return p, nil
}

// stop sends SIGTERM and waits for the process (SIGKILL after 10 s).
func (p *impactd) stop() {
	if p.public != nil {
		_ = p.public.Close()
		_ = p.admin.Close()
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sigterm)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitReady polls /readyz until it answers 200.
func (p *impactd) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return errors.New("impactd exited during start-up")
		default:
		}
		if resp, err := c.Get("http://" + p.httpAddr + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *impactd) connect() {
	p.public = testclient.Dial(p.t, p.grpcAddr, nil)
	p.admin = testclient.Dial(p.t, p.adminGRPCAddr, nil)
	p.adminToken = token(p.t, p.dataDir, "ops-e2e", auth.ScopeAdmin, auth.ScopeNotify)
}

// token mints a dev token for sub with the keys under dataDir.
func token(t *testing.T, dataDir, sub string, scopes ...string) string {
	t.Helper()
	tok, err := auth.MintDevToken(dataDir, sub, scopes, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// callCtx is a client context with a generous deadline: the server's own
// request deadline is what the tests observe.
func callCtx(tok string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	return testclient.WithToken(ctx, tok), cancel
}

// upload stages spec and roster through the ops gRPC stream.
func (p *impactd) upload(spec, roster []byte) (*impactv1.SnapshotInfo, error) {
	ctx, cancel := callCtx(p.adminToken)
	defer cancel()
	return testclient.Upload(ctx, impactv1.NewSnapshotServiceClient(p.admin), demo.IncidentID, spec, roster, 64<<10)
}

// publish makes version visible, expecting expect to be visible.
func (p *impactd) publish(version, expect uint32) {
	p.t.Helper()
	ctx, cancel := callCtx(p.adminToken)
	defer cancel()
	_, err := testclient.Publish(ctx, impactv1.NewSnapshotServiceClient(p.admin), demo.IncidentID, version, expect)
	if err != nil {
		p.t.Fatalf("%s: publish v%d: %v", p.name, version, err)
	}
}

// stageAndPublish uploads and publishes the next version.
func (p *impactd) stageAndPublish(spec, roster []byte, want uint32) {
	p.t.Helper()
	info, err := p.upload(spec, roster)
	if err != nil {
		p.t.Fatalf("%s: upload: %v", p.name, err)
	}
	if info.GetVersion() != want {
		p.t.Fatalf("%s: staged version %d, want %d", p.name, info.GetVersion(), want)
	}
	p.publish(want, want-1)
}

// claim claims a notice for subject through the ops gRPC listener.
func (p *impactd) claim(subject, idemKey string) (*impactv1.Claim, error) {
	ctx, cancel := callCtx(p.adminToken)
	defer cancel()
	r, err := impactv1.NewNoticeServiceClient(p.admin).ClaimNotice(ctx,
		&impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: subject, IdempotencyKey: idemKey})
	return r.GetClaim(), err
}

// status reads the caller's status over gRPC.
func (p *impactd) status(tok string, atLeast uint32) (*impactv1.StatusAnswer, error) {
	ctx, cancel := callCtx(tok)
	defer cancel()
	r, err := impactv1.NewStatusServiceClient(p.public).GetMyStatus(ctx,
		&impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID, AtLeastVersion: atLeast})
	if err != nil {
		return nil, err
	}
	return unpadded(r.GetAnswer())
}

// unpadded is a copy of a without its padding (spaces, as many as the
// transport needs), so that answers compare across transports.
func unpadded(a *impactv1.StatusAnswer) (*impactv1.StatusAnswer, error) {
	if strings.Trim(a.GetPadding(), " ") != "" {
		return nil, fmt.Errorf("padding is not spaces: %q", a.GetPadding())
	}
	c := proto.CloneOf(a)
	c.Padding = ""
	return c, nil
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

// rest performs a REST call and returns the status code and body.
func rest(t *testing.T, method, url, tok, body string) (int, []byte) {
	t.Helper()
	code, _, b := testclient.REST(t, httpClient, method, url, tok, body)
	return code, b
}

// restStatus reads the caller's status over REST; the answer is nil unless
// the code is 200.
func (p *impactd) restStatus(tok string, atLeast uint32) (int, []byte, *impactv1.StatusAnswer) {
	p.t.Helper()
	url := "http://" + p.httpAddr + "/v1/incidents/" + demo.IncidentID + "/status"
	if atLeast > 0 {
		url += "?at_least_version=" + strconv.FormatUint(uint64(atLeast), 10)
	}
	code, body := rest(p.t, http.MethodGet, url, tok, "")
	if code != http.StatusOK {
		return code, body, nil
	}
	var a impactv1.StatusAnswer
	if err := protojson.Unmarshal(body, &a); err != nil {
		p.t.Fatalf("%s: REST status body %s: %v", p.name, body, err)
	}
	u, err := unpadded(&a)
	if err != nil {
		p.t.Fatalf("%s: REST status body %s: %v", p.name, body, err)
	}
	return code, body, u
}

// health is the grpc.health.v1 status of the patient StatusService.
func (p *impactd) health() (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(p.public).Check(ctx, &healthpb.HealthCheckRequest{Service: impactv1.StatusService_ServiceDesc.ServiceName})
	return r.GetStatus(), err
}

// readyz is the HTTP status code of /readyz.
func (p *impactd) readyz() int {
	code, _ := rest(p.t, http.MethodGet, "http://"+p.httpAddr+"/readyz", "", "")
	return code
}

// waitReadiness polls until /readyz and grpc health both report ready (or
// both not ready).
func (p *impactd) waitReadiness(ready bool, timeout time.Duration) {
	p.t.Helper()
	wantCode, wantHealth := http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		wantCode, wantHealth = http.StatusOK, healthpb.HealthCheckResponse_SERVING
	}
	deadline := time.Now().Add(timeout)
	for {
		code := p.readyz()
		h, err := p.health()
		if code == wantCode && err == nil && h == wantHealth {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: readiness: /readyz %d, health %v (%v) after %s; want %d, %v", p.name, code, h, err, timeout, wantCode, wantHealth)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
