package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/demo"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// TestUploadMemory2M measures the memory an upload + publish of a
// 2,000,000-row demo roster takes on the Redis store, in process: the live
// Go heap (sampled every 5 ms) and the resident set (VmRSS/VmHWM of this
// process) before and at the peak, and the time:
//
//	IMPACT_UPLOAD_2M=1 go test -run TestUploadMemory2M -v ./internal/snapshot
//
// (IMPACT_UPLOAD_2M=N uploads N rows; IMPACT_UPLOAD_HEAPPROFILE=FILE writes
// the heap profile of the largest live heap a GC found.)
func TestUploadMemory2M(t *testing.T) {
	flag := os.Getenv("IMPACT_UPLOAD_2M")
	if flag == "" || testing.Short() {
		t.Skip("set IMPACT_UPLOAD_2M=1 to upload 2 million rows")
	}
	rows := 2_000_000
	if v, err := strconv.Atoi(flag); err == nil && v > 1 {
		rows = v
	}
	dir := t.TempDir()
	rosterPath := filepath.Join(dir, "roster.csv")
	f, err := os.Create(rosterPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if _, err := demo.WriteRoster(w, demo.RosterOptions{N: rows, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var spec bytes.Buffer
	if err := demo.WriteSpec(&spec); err != nil {
		t.Fatal(err)
	}
	srv := redisserver.Start(t)
	st, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := NewService(st, testKeyer)
	ctx := context.Background()

	runtime.GC()
	rssBefore := statusKB(t, "VmRSS")
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM
	heapBefore := liveHeapBytes()
	stop := make(chan struct{})
	var peakHeap, peakLive uint64
	var wg sync.WaitGroup
	profile := os.Getenv("IMPACT_UPLOAD_HEAPPROFILE")
	t0 := time.Now()
	wg.Go(func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			if os.Getenv("IMPACT_UPLOAD_TRACE") != "" {
				s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
				metrics.Read(s)
				t.Logf("%6.2fs objects %4.0f MB, goal %4.0f, live %4.0f, mapped-released %4.0f, rss %4.0f", time.Since(t0).Seconds(), float64(liveHeapBytes())/1e6, float64(s[0].Value.Uint64())/1e6, float64(s[1].Value.Uint64())/1e6,
					float64(s[2].Value.Uint64()-s[3].Value.Uint64())/1e6, float64(statusKB(t, "VmRSS"))*1024/1e6)
			}
			ls := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			metrics.Read(ls)
			if l := ls[0].Value.Uint64(); l > peakLive {
				peakLive = l
				if profile != "" {
					if pf, err := os.Create(profile); err == nil {
						_ = pprof.Lookup("heap").WriteTo(pf, 0)
						pf.Close()
					}
				}
			}
			peakHeap = max(peakHeap, liveHeapBytes())
		}
	})
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	info, err := svc.Upload(ctx, UploadRequest{Incident: demo.IncidentID, Spec: spec.Bytes(), Actor: "ops",
		Roster: func() (io.ReadCloser, error) { return os.Open(rosterPath) }})
	if err != nil {
		t.Fatal(err)
	}
	uploaded := time.Since(start)
	if _, _, err := svc.Publish(ctx, demo.IncidentID, info.Version, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&ms1)
	close(stop)
	wg.Wait()
	rssPeak := max(statusKB(t, "VmHWM"), rssBefore)
	t.Logf("%d rows: upload %.2f s, upload + publish %.2f s; heap objects %.0f MB before, peak %.0f MB, largest live heap %.0f MB; RSS %.0f MB before, peak %.0f MB (+%.0f MB); %.0f MB allocated, %d GCs",
		rows, uploaded.Seconds(), took.Seconds(), float64(heapBefore)/1e6, float64(peakHeap)/1e6, float64(peakLive)/1e6,
		float64(rssBefore)*1024/1e6, float64(rssPeak)*1024/1e6, float64(rssPeak-rssBefore)*1024/1e6,
		float64(ms1.TotalAlloc-ms0.TotalAlloc)/1e6, ms1.NumGC-ms0.NumGC)
}

// liveHeapBytes is the bytes of live and not yet swept heap objects.
func liveHeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// statusKB is a field of /proc/self/status in kB (the test skips where
// there is none).
func statusKB(t *testing.T, name string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return n
			}
		}
	}
	t.Skipf("no %s in /proc/self/status", name)
	return 0
}
