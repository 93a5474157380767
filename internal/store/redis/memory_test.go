package redisstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// TestMemory2M loads a 2-million-entry roster through the store and reports
// Redis used_memory per entry and the load time, next to redis-cli --pipe
// loading the same fields into the same number of buckets in the same run.
// It takes about a minute and a few hundred MB: run it with
//
//	IMPACT_REDIS_2M=1 go test -run TestMemory2M -v ./internal/store/redis
//
// (IMPACT_REDIS_2M=N loads N entries instead.)
func TestMemory2M(t *testing.T) {
	flag := os.Getenv("IMPACT_REDIS_2M")
	if flag == "" || testing.Short() {
		t.Skip("set IMPACT_REDIS_2M=1 to load 2 million entries")
	}
	n := 2_000_000
	if v, err := strconv.Atoi(flag); err == nil && v > 1 {
		n = v
	}
	srv := redisserver.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	m := testManifest(400)
	entries := genEntries(7, n, m)

	// 1. The store: Stage, Put in batches of 10k, Commit (verify), Publish.
	base := usedMemory(t, c)
	var opts []redisstore.Option
	if b, err := strconv.Atoi(os.Getenv("IMPACT_REDIS_BUF")); err == nil {
		opts = append(opts, redisstore.WithStageBuffer(b))
	}
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := make(chan uint64)
	stop := make(chan struct{})
	go func() { // sample the Go heap while loading
		var max uint64
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > max {
					max = ms.HeapInuse
				}
			}
		}
	}()
	start := time.Now()
	st, err := s.Stage(ctx, store.StageRequest{Incident: "mem", CreatedBy: "ops", Source: "upload"})
	if err != nil {
		t.Fatal(err)
	}
	d := store.NewDigester(m.Practices)
	for i := 0; i < n; i += 10_000 {
		b := entries[i:min(n, i+10_000)]
		for _, e := range b {
			_ = d.Add(e)
		}
		if err := st.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	putDone := time.Now()
	if _, err := st.Commit(ctx, m, d.Sum(m.Spec), uint64(n)); err != nil {
		t.Fatal(err)
	}
	commitDone := time.Now()
	if _, err := s.Publish(ctx, "mem", 1, 0, "ops", time.Now()); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	close(stop)
	peakHeap := <-peak
	scanStart := time.Now()
	scanned := 0
	if err := s.Scan(ctx, "mem", 1, func(store.Entry) error { scanned++; return nil }); err != nil || scanned != n {
		t.Fatalf("scan: %d entries, %v", scanned, err)
	}
	scanTime := time.Since(scanStart)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	storeMem := usedMemory(t, c) - base
	keys, _ := c.DBSize(ctx).Result()
	buckets := keys - 4 // incidents, head, versions, manifest
	enc, _ := c.ObjectEncoding(ctx, "impact:{r:mem:1:0}").Result()

	// 2. redis-cli --pipe: the same fields (16-byte binary key, record
	// bytes) into the same bucket keys, one HSET per field.
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	bits := 0
	for 1<<bits < int(buckets) {
		bits++
	}
	dir := t.TempDir()
	perField, perBucket := filepath.Join(dir, "field.resp"), filepath.Join(dir, "bucket.resp")
	writePipeFile(t, perField, entries, bits, false)
	writePipeFile(t, perBucket, entries, bits, true)
	pipe := func(file string) (time.Duration, float64) {
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		base := usedMemory(t, c)
		start := time.Now()
		cmd := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(portOf(srv.Addr())), "--pipe")
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
		}
		d := time.Since(start)
		return d, float64(usedMemory(t, c)-base) / float64(n)
	}
	pipeTime, pipeMem := pipe(perField)
	bucketTime, bucketMem := pipe(perBucket)

	report := fmt.Sprintf(`%d entries into %d buckets (%s)
  store:  stage+put+commit(verify)+publish %.2fs (put %.2fs, commit+verify %.2fs, flip %.3fs); %.1f B/entry used_memory; Go heap in use peak %.0f MB (the test's own entries included), allocated %.0f MB
  scan of the version: %.2fs
  --pipe: one HSET per field %.2fs, %.1f B/entry; one HSET per bucket %.2fs, %.1f B/entry
  ratio store/--pipe: %.2fx (per field), %.2fx (per bucket)`,
		n, buckets, enc, total.Seconds(), putDone.Sub(start).Seconds(), commitDone.Sub(putDone).Seconds(),
		total.Seconds()-commitDone.Sub(start).Seconds(), float64(storeMem)/float64(n),
		float64(peakHeap)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6, scanTime.Seconds(),
		pipeTime.Seconds(), pipeMem, bucketTime.Seconds(), bucketMem,
		total.Seconds()/pipeTime.Seconds(), total.Seconds()/bucketTime.Seconds())
	t.Log(report)
	fmt.Println(report)
	if per := float64(storeMem) / float64(n); n >= 1_000_000 && per > 48 {
		t.Errorf("%.1f B/entry, target at most 48", per)
	}
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
	groups := make(map[uint32][]store.Entry)
	var order []uint32
	for _, e := range entries {
		b := bucketOf(e.Key)
		if !perBucket {
			groups[0] = append(groups[0][:0], e)
			writeHSet(w, b, groups[0])
			continue
		}
		if _, ok := groups[b]; !ok {
			order = append(order, b)
		}
		groups[b] = append(groups[b], e)
	}
	for _, b := range order {
		writeHSet(w, b, groups[b])
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
