package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/storetest"
)

// entries returns n entries with distinct keys derived from seed.
func entries(seed byte, n int) []store.Entry {
	out := make([]store.Entry, n)
	for i := range out {
		var k store.Key
		k[0] = seed
		k[1], k[2], k[3] = byte(i>>16), byte(i>>8), byte(i)
		k[15] = 0x5a
		out[i] = store.Entry{Key: k, Record: store.Record{Status: store.Status(1 + i%2), Cohorts: uint64(1 + i%3), Practice: uint32(i % 2)}}
	}
	return out
}

var testManifest = store.Manifest{Spec: []byte(`{"incident":{"id":"restart"}}`), Cohorts: 2, Practices: []string{"p"}}

func open(t *testing.T, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(path, embedded.WithLockTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func states(t *testing.T, s store.Store, incident string) []store.State {
	t.Helper()
	list, err := s.Versions(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.State
	for _, vi := range list {
		out = append(out, vi.State)
	}
	return out
}

func TestRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "impact.db")
	const inc = "restart"
	e1, e2 := entries(1, 500), entries(2, 300)

	s := open(t, path)
	info1 := storetest.Load(t, s, inc, testManifest, e1, 0)
	if _, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 1, ExpectVisible: 0, Actor: "ops", At: storetest.T0}); err != nil {
		t.Fatal(err)
	}
	info2 := storetest.Load(t, s, inc, testManifest, e2, 0)
	pin := store.Pin{Version: 1, Record: e1[7].Record, NoticeID: "n-1", NotifiedAt: storetest.T0}
	idem := store.IdemKey{1, 2, 3}
	if err := s.ClaimPin(ctx, inc, e1[7].Key, nil, pin, idem); err != nil {
		t.Fatal(err)
	}
	// A load abandoned without Commit or Abort, as by a crash.
	st, err := s.Stage(ctx, store.StageRequest{Incident: inc, At: storetest.T0})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, e2[:10]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	if h, err := s.Head(ctx, inc); err != nil || h != (store.Head{Incident: inc, Visible: 1, Latest: 3}) {
		t.Fatalf("head after restart: %+v, %v", h, err)
	}
	if got, want := fmt.Sprint(states(t, s, inc)), fmt.Sprint([]store.State{store.StatePublished, store.StateStaged, store.StateAborted}); got != want {
		t.Errorf("states after restart: %s, want %s", got, want)
	}
	for ver, info := range map[uint64]store.VersionInfo{1: info1, 2: info2} {
		got, m, err := s.Version(ctx, inc, ver)
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != info.Digest || got.Counts.Entries != info.Counts.Entries || string(m.Spec) != string(testManifest.Spec) {
			t.Errorf("v%d after restart: %+v", ver, got)
		}
		// The content still verifies against the digest recorded at load.
		_, err = store.Verify(m, got.Digest, got.Counts.Entries, func(fn func(store.Entry) error) error {
			return s.Scan(ctx, inc, ver, fn)
		})
		if err != nil {
			t.Errorf("v%d does not verify after restart: %v", ver, err)
		}
	}
	v, err := s.Read(ctx, inc, e1[7].Key, &idem)
	if err != nil {
		t.Fatal(err)
	}
	if v.Visible != 1 || v.Record != e1[7].Record || v.Pin == nil || v.Pin.NoticeID != "n-1" || v.Replay == nil || !v.Pin.NotifiedAt.Equal(storetest.T0) {
		t.Errorf("read after restart: %+v", v)
	}
	// The abandoned stager cannot revive its version.
	if err := st.Put(ctx, e2[10:20]); err == nil {
		t.Error("put through a stager of the closed store succeeded")
	}
	if _, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 3, ExpectVisible: 1, Actor: "ops", At: storetest.T0}); !errors.Is(err, store.ErrNotStaged) {
		t.Errorf("publish of the version a crash left staging: %v, want ErrNotStaged", err)
	}
	if _, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 2, ExpectVisible: 1, Actor: "ops", At: storetest.T0}); err != nil {
		t.Errorf("publish of v2 after restart: %v", err)
	}
	if info := storetest.Load(t, s, inc, testManifest, e1, 0); info.Version != 4 {
		t.Errorf("next version after restart: %d, want 4", info.Version)
	}
}

// TestCrashMidLoad kills a process that holds the store while it loads a
// version: while it runs, a second Open fails fast with ErrLocked; after
// the crash, Open aborts the half-loaded version and keeps the rest.
func TestCrashMidLoad(t *testing.T) {
	if path := os.Getenv("IMPACT_EMBEDDED_CRASH_CHILD"); path != "" {
		crashChild(path)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "impact.db")
	const inc = "restart"
	s := open(t, path)
	storetest.Load(t, s, inc, testManifest, entries(1, 200), 0)
	if _, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 1, ExpectVisible: 0, Actor: "ops", At: storetest.T0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidLoad$")
	cmd.Env = append(os.Environ(), "IMPACT_EMBEDDED_CRASH_CHILD="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	staged, err := strconv.ParseUint(line[:len(line)-1], 10, 64)
	if err != nil || staged != 2 {
		t.Fatalf("child reported %q, want version 2", line)
	}

	_, err = embedded.Open(path, embedded.WithLockTimeout(50*time.Millisecond))
	if !errors.Is(err, embedded.ErrLocked) {
		t.Fatalf("open while another process holds the store: %v, want ErrLocked", err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s = open(t, path)
	if got, want := fmt.Sprint(states(t, s, inc)), fmt.Sprint([]store.State{store.StatePublished, store.StateAborted}); got != want {
		t.Errorf("states after crash: %s, want %s", got, want)
	}
	if h, err := s.Head(ctx, inc); err != nil || h.Visible != 1 || h.Latest != 2 {
		t.Errorf("head after crash: %+v, %v", h, err)
	}
	v, err := s.Read(ctx, inc, entries(1, 200)[5].Key, nil)
	if err != nil || v.Visible != 1 || v.Record != entries(1, 200)[5].Record {
		t.Errorf("read after crash: %+v, %v", v, err)
	}
}

// crashChild stages and half-loads a version, reports its number, and waits
// to be killed.
func crashChild(path string) {
	s, err := embedded.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	st, err := s.Stage(ctx, store.StageRequest{Incident: "restart", At: storetest.T0})
	if err == nil {
		err = st.Put(ctx, entries(3, 70_000)) // more than one run of stageFlush: part reaches the file
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	fmt.Println(st.Version())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until killed
	os.Exit(3)
}
