package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/testutil/redisserver"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// noRateLimits turns the patient listener's rate limits off: these tests
// read far faster than one patient from one address may.
var noRateLimits = []string{"--rate-subject", "off", "--rate-ip", "off"}

// startDurableRedis starts a redis-server that keeps acknowledged pins
// (appendonly yes, appendfsync always), as impactd requires.
func startDurableRedis(t *testing.T) *redisserver.Server {
	t.Helper()
	return redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
}

func redisFlags(srv *redisserver.Server) []string {
	return []string{"--store", "redis", "--redis-url", "redis://" + srv.Addr() + "/0"}
}

// replicaSubject is the subject whose status changes every round.
const replicaSubject = "patient-e2e-subject"

// roundStatus is the subject's status in round r (from 1): affected, under
// review, absent (not affected), again and again, so that every round's
// claim is due.
func roundStatus(r int) impactv1.Status {
	switch r % 3 {
	case 1:
		return impactv1.Status_AFFECTED
	case 2:
		return impactv1.Status_UNDER_REVIEW
	}
	return impactv1.Status_NOT_AFFECTED
}

// replicaRoster is a small roster: fillers that never change and the
// subject with its status of round r.
func replicaRoster(r int) []byte {
	var b strings.Builder
	b.WriteString("subject_id,status,cohorts,practice_id\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "patient-e2e-%04d,affected,northland,GP-NL-%03d\n", i, 1+i%45)
	}
	switch roundStatus(r) {
	case impactv1.Status_AFFECTED:
		fmt.Fprintf(&b, "%s,affected,northland;uploads,GP-NL-007\n", replicaSubject)
	case impactv1.Status_UNDER_REVIEW:
		fmt.Fprintf(&b, "%s,under_review,referrals,GP-RF-101\n", replicaSubject)
	}
	return []byte(b.String())
}

// observation is one background read through replica B.
type observation struct {
	acked    uint32 // version of the last claim acknowledged before the read
	answer   *impactv1.StatusAnswer
	err      error
	readTime time.Time
}

// TestReplicasAnswerFromThePin (invariant 3, the app never contradicts the email): two
// impactd processes share one Redis. Round after round, a new version is
// published and a notice claimed through replica A; replica B, read at once
// over gRPC and REST, answers from the version the claim pinned. A reader
// polling B all along never sees the subject answered from an older pin
// than the last acknowledged claim.
func TestReplicasAnswerFromThePin(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 6
	}
	srv := startDurableRedis(t)
	data := t.TempDir()
	flags := append(redisFlags(srv), noRateLimits...)
	ps := startImpactds(t, data, []string{"A", "B"}, flags...)
	a, b := ps[0], ps[1]
	spec := testclient.DemoSpec(t)
	tok := token(t, data, replicaSubject)

	var (
		mu     sync.Mutex
		claims = map[uint32]*impactv1.Claim{} // by pinned version
		acked  atomic.Uint32
		obs    []observation
		stop   = make(chan struct{})
		reader sync.WaitGroup
	)
	startReader := func() {
		reader.Add(1)
		go func() {
			defer reader.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o := observation{acked: acked.Load(), readTime: time.Now()}
				o.answer, o.err = b.status(tok, 0)
				obs = append(obs, o) // only this goroutine appends until stop
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	var last *impactv1.Claim
	var lastKey string
	for r := 1; r <= rounds; r++ {
		v := uint32(r)
		a.stageAndPublish(spec, replicaRoster(r), v)
		want := roundStatus(r)
		lastKey = fmt.Sprintf("e2e-round-%d", r)
		c, err := a.claim(replicaSubject, lastKey)
		if err != nil {
			t.Fatalf("round %d: claim through A: %v", r, err)
		}
		if c.GetAction() != impactv1.ClaimAction_SEND || c.GetVersion() != v || c.GetStatus() != want || c.GetNoticeId() == "" {
			t.Fatalf("round %d: claim through A: %v; want SEND at v%d with %v", r, c, v, want)
		}
		mu.Lock()
		claims[v] = c
		mu.Unlock()
		acked.Store(v)
		last = c
		if r == 1 {
			startReader()
		}

		// At once through B, both transports.
		g, err := b.status(tok, 0)
		if err != nil {
			t.Fatalf("round %d: gRPC read through B: %v", r, err)
		}
		if g.GetNotifiedVersion() != v || g.GetStatus() != want || g.GetNoticeId() != c.GetNoticeId() ||
			!proto.Equal(g.GetNotice(), c.GetNotice()) || !cohortsEqual(g.GetCohorts(), c.GetCohorts()) ||
			g.GetUpdatePending() || g.GetVisibleStatus() != want || g.GetVersion() < v {
			t.Fatalf("round %d: B answered %v\nthe email (claim through A) was %v", r, g, c)
		}
		code, body, ra := b.restStatus(tok, v)
		if code != http.StatusOK {
			t.Fatalf("round %d: REST read through B at_least_version=%d: %d %s", r, v, code, body)
		}
		if !proto.Equal(ra, g) {
			t.Fatalf("round %d: B's REST answer differs from its gRPC answer:\n%v\n%v", r, ra, g)
		}
	}
	close(stop)
	reader.Wait()

	// A retried claim with the same idempotency key, through the other
	// replica, is the same answer.
	again, err := b.claim(replicaSubject, lastKey)
	if err != nil || !proto.Equal(again, last) {
		t.Fatalf("idempotent replay through B: %v, %v; want %v", again, err, last)
	}

	if len(obs) < rounds {
		t.Fatalf("background reader made only %d reads", len(obs))
	}
	for i, o := range obs {
		if o.err != nil {
			t.Fatalf("background read %d (after claim v%d): %v", i, o.acked, o.err)
		}
		n := o.answer.GetNotifiedVersion()
		c := claims[n]
		switch {
		case n < o.acked:
			t.Fatalf("background read %d: answered from pin v%d after the claim at v%d was acknowledged", i, n, o.acked)
		case c == nil:
			t.Fatalf("background read %d: notified_version %d was never claimed", i, n)
		case o.answer.GetStatus() != c.GetStatus() || o.answer.GetNoticeId() != c.GetNoticeId():
			t.Fatalf("background read %d: %v contradicts the claim %v", i, o.answer, c)
		}
	}
	t.Logf("%d rounds; %d background reads through B, all from the latest acknowledged pin or a newer one", rounds, len(obs))
}

func cohortsEqual(a, b []*impactv1.Cohort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
