package practice

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// The incident of the benchmarks: 125,000 affected subjects (the seeds'
// figure) over 400 practices, every one of them notified (125,000 pins).
const (
	benchSubjects  = 125_000
	benchPractices = 400
)

func benchSubject(i int) string  { return fmt.Sprintf("bench-%07d", i) }
func benchPractice(i int) string { return fmt.Sprintf("PR%03d", i%benchPractices) }
func benchRoster() func() (io.ReadCloser, error) {
	var b strings.Builder
	b.WriteString("subject_id,status,cohorts,practice_id\n")
	cohorts := []string{"a", "b", "a;b"}
	for i := 0; i < benchSubjects; i++ {
		st := "affected"
		if i%10 == 9 {
			st = "under_review"
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s\n", benchSubject(i), st, cohorts[i%3], benchPractice(i))
	}
	roster := b.String()
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(roster)), nil }
}

const benchSpec = `incident: {id: bench, title: Bench}
cohorts:
  - {id: a, title: A, support_contact: "0800", notice: {subject: S, body: B}}
  - {id: b, title: B, support_contact: "0800", notice: {subject: S, body: B}}
under_review_notice: {subject: S, body: B}
not_affected_notice: {subject: S, body: B}
`

// benchService loads the incident into st, notifies every subject, and
// returns the practice view over it (tally counted on every call).
func benchService(b *testing.B, st store.Store) *Service {
	b.Helper()
	ctx := context.Background()
	keyer, err := auth.NewKeyer([]byte(strings.Repeat("p", 32)))
	if err != nil {
		b.Fatal(err)
	}
	catalog := snapshot.NewCatalog(st, 0)
	snaps := snapshot.NewService(st, keyer, snapshot.WithCatalog(catalog))
	info, err := snaps.Upload(ctx, snapshot.UploadRequest{Incident: "bench", Spec: []byte(benchSpec), Roster: benchRoster(), Actor: "ops"})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := snaps.Publish(ctx, "bench", info.Version, 0, "ops"); err != nil {
		b.Fatal(err)
	}
	answers := status.New(st, catalog, keyer)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < benchSubjects; i += 64 {
				if _, err := answers.Claim(ctx, "bench", benchSubject(i), "k"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return New(st, catalog, answers, keyer, audit.New(st), WithTallyTTL(0))
}

// benchStores runs fn on the embedded store and on Redis.
func benchStores(b *testing.B, fn func(b *testing.B, svc *Service)) {
	b.Run("embedded", func(b *testing.B) {
		st, err := embedded.Open(filepath.Join(b.TempDir(), "impact.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		fn(b, benchService(b, st))
	})
	b.Run("redis", func(b *testing.B) {
		srv := redisserver.Start(b)
		st, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		fn(b, benchService(b, st))
	})
}

// BenchmarkCheckPatients checks a register of 10,000 ids, 313 of them the
// practice's patients, the rest unknown (the common case: most of a
// register was not affected).
func BenchmarkCheckPatients(b *testing.B) {
	benchStores(b, func(b *testing.B, svc *Service) {
		ids := make([]string, 0, MaxBatch)
		for i := 7; i < benchSubjects && len(ids) < 313; i += benchPractices {
			ids = append(ids, benchSubject(i))
		}
		for i := 0; len(ids) < MaxBatch; i++ {
			ids = append(ids, fmt.Sprintf("other-%07d", i))
		}
		c := Caller{Actor: "dr", Practice: benchPractice(7)}
		b.ReportAllocs()
		for b.Loop() {
			chk, err := svc.Check(context.Background(), c, "bench", ids)
			if err != nil || len(chk.Patients) != 313 {
				b.Fatalf("%d found, %v", len(chk.Patients), err)
			}
		}
		b.ReportMetric(float64(b.N*len(ids))/b.Elapsed().Seconds(), "ids/s")
	})
}

// BenchmarkPracticeImpact is one GetPracticeImpact at 125,000 pins with
// the tally counted every call (the TTL cache off): its cost is the pass
// over the pins that the cache saves for DefaultTallyTTL.
func BenchmarkPracticeImpact(b *testing.B) {
	benchStores(b, func(b *testing.B, svc *Service) {
		c := Caller{Actor: "dr", Practice: benchPractice(7)}
		b.ReportAllocs()
		for b.Loop() {
			im, err := svc.impact(context.Background(), c, "bench")
			if err != nil || im.Notified != 313 {
				b.Fatalf("%+v, %v", im, err)
			}
		}
	})
}
