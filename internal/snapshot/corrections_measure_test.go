package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// TestCorrections2M measures the contradiction report (Corrections, the
// count a publish makes under its fence) at 125,000 pins and a
// 2,000,000-row version, on both stores, and reports the median of 3 runs,
// the bytes it allocated and the live heap after it:
//
//	IMPACT_REVIEW_2M=1 go test -run TestCorrections2M -v -timeout 30m ./internal/snapshot
//
// (IMPACT_REVIEW_2M=N uses N rows; the pins are N/16.)
func TestCorrections2M(t *testing.T) {
	flag := os.Getenv("IMPACT_REVIEW_2M")
	if flag == "" || testing.Short() {
		t.Skip("set IMPACT_REVIEW_2M=1 to measure the report at 2 million rows and 125,000 pins")
	}
	rows := 2_000_000
	if v, err := strconv.Atoi(flag); err == nil && v > 1 {
		rows = v
	}
	pins := rows / 16
	dir := t.TempDir()
	// v1: everyone affected or under review; v2: every tenth row removed,
	// every seventh moved to under review.
	write := func(name string, v2 bool) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		fmt.Fprintln(w, "subject_id,status,cohorts")
		cohorts := []string{"northland", "referrals", "uploads"}
		for i := range rows {
			st := "affected"
			switch {
			case v2 && i%10 == 0:
				continue
			case v2 && i%7 == 0, i%50 == 0:
				st = "under_review"
			}
			fmt.Fprintf(w, "s%07d,%s,%s\n", i, st, cohorts[i%3])
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	r1, r2 := write("v1.csv", false), write("v2.csv", true)
	engines := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"embedded", func(t *testing.T) store.Store {
			st, err := embedded.Open(filepath.Join(t.TempDir(), "impact.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"redis", func(t *testing.T) store.Store {
			srv := redisserver.Start(t)
			st, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
	}
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			ctx := context.Background()
			st := eng.open(t)
			svc := NewService(st, testKeyer)
			for _, r := range []string{r1, r2} {
				if _, err := svc.Upload(ctx, UploadRequest{Incident: incident, Spec: specYAML(t), Actor: "ops",
					Roster: func() (io.ReadCloser, error) { return os.Open(r) }}); err != nil {
					t.Fatal(err)
				}
				if r == r1 {
					if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops"); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Pin every 16th subject at v1, 64 claims at a time.
			start := time.Now()
			var wg sync.WaitGroup
			work := make(chan int)
			for range 64 {
				wg.Go(func() {
					for i := range work {
						if err := notify(ctx, st, fmt.Sprintf("s%07d", i), 0); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			for i := 0; i < rows && i/16 < pins; i += 16 {
				work <- i
			}
			close(work)
			wg.Wait()
			t.Logf("%d pins claimed in %.1f s", pins, time.Since(start).Seconds())

			var times []float64
			var alloc uint64
			var nc *NotifiedChanges
			for range 3 {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				start := time.Now()
				var err error
				if nc, err = svc.Corrections(ctx, incident, 2); err != nil {
					t.Fatal(err)
				}
				times = append(times, time.Since(start).Seconds())
				runtime.ReadMemStats(&after)
				alloc = after.TotalAlloc - before.TotalAlloc
			}
			sort.Float64s(times)
			var live runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&live)
			if nc.Pinned != uint64(pins) || nc.Total == 0 {
				t.Fatalf("report: %d pinned, %d corrections", nc.Pinned, nc.Total)
			}
			t.Logf("%s: %d rows, %d pins, %d corrections: median %.3f s (%.3f-%.3f), %.1f MB allocated per report, live heap %.1f MB",
				eng.name, rows, nc.Pinned, nc.Total, times[1], times[0], times[2], float64(alloc)/1e6, float64(live.HeapInuse)/1e6)
		})
	}
}
