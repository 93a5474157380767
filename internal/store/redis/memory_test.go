package redisstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// TestMemory2M loads a 2-million-entry roster through the store (Stage, Put
// in batches of 10k, Commit with its read-back verification, Publish) and
// reports Redis used_memory per entry and the time, next to redis-cli --pipe
// loading the same fields (16-byte binary key, record bytes) into the same
// bucket keys in the same run, one HSET per field and one HSET per bucket.
// The three loads run interleaved, IMPACT_REDIS_ROUNDS times (default 3),
// and the medians are reported. It takes a minute or two and about 500 MB:
//
//	IMPACT_REDIS_2M=1 go test -run TestMemory2M -v ./internal/store/redis
//
// (IMPACT_REDIS_2M=N loads N entries instead; IMPACT_REDIS_BUF sets the
// stage buffer.)
func TestMemory2M(t *testing.T) {
	flag := os.Getenv("IMPACT_REDIS_2M")
	if flag == "" || testing.Short() {
		t.Skip("set IMPACT_REDIS_2M=1 to load 2 million entries")
	}
	n := 2_000_000
	if v, err := strconv.Atoi(flag); err == nil && v > 1 {
		n = v
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("IMPACT_REDIS_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	var opts []redisstore.Option
	if b, err := strconv.Atoi(os.Getenv("IMPACT_REDIS_BUF")); err == nil {
		opts = append(opts, redisstore.WithStageBuffer(b))
	}
	srv := redisserver.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	m := testManifest(400)
	entries := genEntries(7, n, m)

	var (
		storeTimes, putTimes, commitTimes, scanTimes, fieldTimes, bucketTimes, ratioField, ratioBucket []float64
		storeMem, fieldMem, bucketMem                                                                  float64
		buckets                                                                                        int64
		enc                                                                                            string
		heapPeak                                                                                       uint64
	)
	dir := t.TempDir()
	perField, perBucket := filepath.Join(dir, "field.resp"), filepath.Join(dir, "bucket.resp")
	for round := 0; round < rounds; round++ {
		// 1. The store.
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		base := usedMemory(t, c)
		s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}), opts...)
		if err != nil {
			t.Fatal(err)
		}
		d := store.NewDigester(m.Practices)
		for _, e := range entries {
			_ = d.Add(e)
		}
		digest := d.Sum(m.Spec)
		runtime.GC()
		before := liveHeap()
		stopSampling, peak := sampleHeap()
		start := time.Now()
		st, err := s.Stage(ctx, store.StageRequest{Incident: "mem", CreatedBy: "ops", Source: "upload"})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += 10_000 {
			if err := st.Put(ctx, entries[i:min(n, i+10_000)]); err != nil {
				t.Fatal(err)
			}
		}
		putDone := time.Now()
		if _, err := st.Commit(ctx, m, digest, uint64(n)); err != nil {
			t.Fatal(err)
		}
		commitDone := time.Now()
		if _, err := s.Publish(ctx, store.PublishRequest{Incident: "mem", Version: 1, ExpectVisible: 0, Actor: "ops", At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		total := time.Since(start)
		close(stopSampling)
		if p := <-peak; p > before && p-before > heapPeak {
			heapPeak = p - before
		}
		storeTimes = append(storeTimes, total.Seconds())
		putTimes = append(putTimes, putDone.Sub(start).Seconds())
		commitTimes = append(commitTimes, commitDone.Sub(putDone).Seconds())
		storeMem = float64(usedMemory(t, c)-base) / float64(n)
		keys, _ := c.DBSize(ctx).Result()
		buckets = keys - 4 // incidents, head, versions, manifest
		enc, _ = c.ObjectEncoding(ctx, "impact:{r:mem:1:0}").Result()
		scanStart := time.Now()
		scanned := 0
		if err := s.Scan(ctx, "mem", 1, func(store.Entry) error { scanned++; return nil }); err != nil || scanned != n {
			t.Fatalf("scan: %d entries, %v", scanned, err)
		}
		scanTimes = append(scanTimes, time.Since(scanStart).Seconds())
		_ = s.Close()

		// 2. redis-cli --pipe into the same bucket keys.
		if round == 0 {
			bits := 0
			for 1<<bits < int(buckets) {
				bits++
			}
			writePipeFile(t, perField, entries, bits, false)
			writePipeFile(t, perBucket, entries, bits, true)
		}
		var ft, bt float64
		ft, fieldMem = pipeLoad(t, c, srv.Addr(), perField, n)
		bt, bucketMem = pipeLoad(t, c, srv.Addr(), perBucket, n)
		fieldTimes, bucketTimes = append(fieldTimes, ft), append(bucketTimes, bt)
		ratioField = append(ratioField, total.Seconds()/ft)
		ratioBucket = append(ratioBucket, total.Seconds()/bt)
	}
	report := fmt.Sprintf(`%d entries into %d buckets (%s), medians of %d interleaved rounds, load average %s
  store:  stage+put+commit(verify)+publish %.2fs (put %.2fs, commit+verify %.2fs); %.1f B/entry used_memory; live Go heap growth peak %.0f MB
  store:  scan of the version %.2fs
  --pipe: one HSET per field %.2fs, %.1f B/entry; one HSET per bucket %.2fs, %.1f B/entry
  store/--pipe time: %.2fx (per field), %.2fx (per bucket)`,
		n, buckets, enc, rounds, loadAverage(),
		median(storeTimes), median(putTimes), median(commitTimes), storeMem, float64(heapPeak)/1e6,
		median(scanTimes),
		median(fieldTimes), fieldMem, median(bucketTimes), bucketMem,
		median(ratioField), median(ratioBucket))
	t.Log(report)
	fmt.Println(report)
	if n >= 1_000_000 && storeMem > 48 {
		t.Errorf("%.1f B/entry, target at most 48", storeMem)
	}
}

// liveHeap is the Go heap that the last GC found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeap samples the live Go heap until stop is closed, then sends the
// peak.
func sampleHeap() (stop chan struct{}, peak chan uint64) {
	stop, peak = make(chan struct{}), make(chan uint64, 1)
	go func() {
		var max uint64
		for {
			if l := liveHeap(); l > max {
				max = l
			}
			select {
			case <-stop:
				peak <- max
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return stop, peak
}

func pipeLoad(t *testing.T, c *redis.Client, addr, file string, n int) (seconds, perEntry float64) {
	t.Helper()
	ctx := context.Background()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	base := usedMemory(t, c)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(portOf(addr)), "--pipe")
	cmd.Stdin = f
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
	}
	seconds = time.Since(start).Seconds()
	return seconds, float64(usedMemory(t, c)-base) / float64(n)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

func portOf(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	p, _ := strconv.Atoi(addr[i+1:])
	return p
}

// writePipeFile writes RESP HSETs of entries into the store's bucket keys:
// one command per field, or (perBucket) one per bucket.
func writePipeFile(t *testing.T, path string, entries []store.Entry, bits int, perBucket bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	bucketOf := func(k store.Key) uint32 {
		if bits == 0 {
			return 0
		}
		return (uint32(k[0])<<24 | uint32(k[1])<<16 | uint32(k[2])<<8 | uint32(k[3])) >> (32 - bits)
	}
	if !perBucket {
		for i := range entries {
			writeHSet(w, bucketOf(entries[i].Key), entries[i:i+1])
		}
	} else {
		groups := make(map[uint32][]store.Entry)
		var order []uint32
		for _, e := range entries {
			b := bucketOf(e.Key)
			if _, ok := groups[b]; !ok {
				order = append(order, b)
			}
			groups[b] = append(groups[b], e)
		}
		for _, b := range order {
			writeHSet(w, b, groups[b])
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeHSet(w *bufio.Writer, b uint32, entries []store.Entry) {
	key := "impact:{r:mem:1:" + strconv.FormatUint(uint64(b), 16) + "}"
	fmt.Fprintf(w, "*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n", 2+2*len(entries), len(key), key)
	var rec []byte
	for _, e := range entries {
		rec = store.AppendRecord(rec[:0], e.Record)
		fmt.Fprintf(w, "$%d\r\n%s\r\n$%d\r\n%s\r\n", len(e.Key), e.Key[:], len(rec), rec)
	}
}
