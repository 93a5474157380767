package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/store/replica"
	"github.com/impact-health/impact/internal/testutil/redisserver"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// requestTimeout is impactd's --request-timeout in the outage test; every
// call must fail within it (plus scheduling slack on a busy machine).
const (
	requestTimeout = time.Second
	timeoutSlack   = 2 * time.Second
)

// TestRedisOutageFailsClosedAndRecovers (invariant 5, fail closed): with Redis crashed, and then with Redis hung, status reads answer
// UNAVAILABLE / 503 within the request deadline and never a status;
// readiness goes NOT_SERVING on both health surfaces. When Redis is back
// (restarted on its AOF, or resumed), the same impactd process serves the
// same answers again.
func TestRedisOutageFailsClosedAndRecovers(t *testing.T) {
	srv := startDurableRedis(t)
	data := t.TempDir()
	// Default rate limits stay on (in memory now): an outage must turn into
	// UNAVAILABLE, not into refusals or anything else.
	p := startImpactd(t, "impactd", data, append(redisFlags(srv), "--request-timeout", requestTimeout.String())...)

	roster := "subject_id,status,cohorts,practice_id\n" +
		"patient-e2e-0001,affected,northland,GP-NL-001\n" +
		"patient-e2e-0002,under_review,referrals,GP-RF-002\n"
	p.stageAndPublish(testclient.DemoSpec(t), []byte(roster), 1)
	if c, err := p.claim("patient-e2e-0001", "outage-wave-1"); err != nil || c.GetAction() != impactv1.ClaimAction_SEND {
		t.Fatalf("claim: %v, %v", c, err)
	}
	subjects := []string{"patient-e2e-0001", "patient-e2e-0002", "patient-e2e-absent"}
	toks := make([]string, len(subjects))
	before := make([]*impactv1.StatusAnswer, len(subjects))
	for i, s := range subjects {
		toks[i] = token(t, data, s)
		a, err := p.status(toks[i], 0)
		if err != nil {
			t.Fatalf("%s with the store up: %v", s, err)
		}
		before[i] = a
	}
	if before[0].GetNotifiedVersion() != 1 || before[2].GetStatus() != impactv1.Status_NOT_AFFECTED {
		t.Fatalf("answers with the store up: %v", before)
	}
	sameAnswers := func(phase string) {
		t.Helper()
		for i, tok := range toks {
			a, err := p.status(tok, 0)
			if err != nil || !proto.Equal(a, before[i]) {
				t.Fatalf("%s: %s over gRPC: %v, %v; want %v", phase, subjects[i], a, err, before[i])
			}
			code, body, ra := p.restStatus(tok, 0)
			if code != http.StatusOK || !proto.Equal(ra, before[i]) {
				t.Fatalf("%s: %s over REST: %d %s", phase, subjects[i], code, body)
			}
		}
	}

	t.Run("crashed", func(t *testing.T) {
		srv.Kill()
		untilLeaseLapses(t, p, toks, before)
		assertFailsClosed(t, p, toks)
		p.waitReadiness(false, 15*time.Second)
		assertFailsClosed(t, p, toks)
		srv.Restart() // same port, same AOF
		p.waitReadiness(true, 20*time.Second)
		sameAnswers("after the restart")
	})

	t.Run("hung", func(t *testing.T) {
		pid := redisPID(t, srv)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		t.Cleanup(resume)
		untilLeaseLapses(t, p, toks, before)
		assertFailsClosed(t, p, toks)
		p.waitReadiness(false, 15*time.Second)
		assertFailsClosed(t, p, toks)
		resume()
		p.waitReadiness(true, 20*time.Second)
		sameAnswers("after Redis resumed")
	})
}

// untilLeaseLapses reads until the replica stops answering from memory:
// with Redis gone it may answer from memory while its lease runs (the
// answers are then the ones it gave before: nothing was written since),
// never longer than the lease (replica.DefaultLease) and a request timeout.
func untilLeaseLapses(t *testing.T, p *impactd, toks []string, before []*impactv1.StatusAnswer) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(replica.DefaultLease + requestTimeout + timeoutSlack)
	for i := 0; ; i = (i + 1) % len(toks) {
		a, err := p.status(toks[i], 0)
		if status.Code(err) == codes.Unavailable {
			t.Logf("answered from memory for %s after Redis went, then UNAVAILABLE", time.Since(start).Round(time.Millisecond))
			return
		}
		if err != nil || !proto.Equal(a, before[i]) {
			t.Fatalf("subject %d while the lease runs: %v, %v; want its earlier answer or UNAVAILABLE", i, a, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still answering from memory %s after Redis went (lease %s)", time.Since(start), replica.DefaultLease)
		}
		time.Sleep(100 * time.Millisecond) // a subject's reads stay under its default rate limit
	}
}

// assertFailsClosed checks that every subject's status read, over gRPC and
// REST, and a claim, fail with UNAVAILABLE / 503 within the request
// deadline, and that no answer carries a status. The calls run side by
// side, each timed on its own.
func assertFailsClosed(t *testing.T, p *impactd, toks []string) {
	t.Helper()
	bound := requestTimeout + timeoutSlack
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []string
		slowest time.Duration
	)
	check := func(what string, call func() (ok bool, got string)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ok, got := call()
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, d)
			if !ok || d > bound {
				errs = append(errs, fmt.Sprintf("%s with Redis down: %s after %s; want UNAVAILABLE / 503 within %s", what, got, d, bound))
			}
		}()
	}
	for i, tok := range toks {
		check(fmt.Sprintf("subject %d over gRPC", i), func() (bool, string) {
			a, err := p.status(tok, 0)
			return status.Code(err) == codes.Unavailable && a == nil, fmt.Sprintf("%v, %v", a, err)
		})
		for _, path := range []string{"/v1/incidents/" + demo.IncidentID + "/status", "/v1/status"} {
			check(fmt.Sprintf("subject %d GET %s", i, path), func() (bool, string) {
				code, body, err := get("http://"+p.httpAddr+path, tok)
				return err == nil && code == http.StatusServiceUnavailable && !bytes.Contains(body, []byte("AFFECTED")) &&
					!bytes.Contains(body, []byte("UNDER_REVIEW")) && !bytes.Contains(body, []byte("version")), fmt.Sprintf("%d %s %v", code, body, err)
			})
		}
	}
	check("claim", func() (bool, string) {
		c, err := p.claim("patient-e2e-absent", "outage-claim") // never due: a late write changes nothing
		return status.Code(err) == codes.Unavailable && c == nil, fmt.Sprintf("%v, %v", c, err)
	})
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	t.Logf("%d calls failed closed, the slowest after %s (request timeout %s)", 3*len(toks)+1, slowest.Round(time.Millisecond), requestTimeout)
}

// get performs a GET with a bearer token, for any goroutine.
func get(url, tok string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// redisPID asks the server for its process id.
func redisPID(t *testing.T, srv *redisserver.Server) int {
	t.Helper()
	info, err := srv.Client(t).Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatal("INFO server has no process_id")
	return 0
}
