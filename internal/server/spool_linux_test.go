package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// openSpools lists this process's open files that are upload spools in
// dir, as the kernel names them ("... (deleted)" once unlinked).
func openSpools(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, filepath.Join(dir, "impact-roster-")) {
			out = append(out, target)
		}
	}
	return out
}

func allDeleted(targets []string) bool {
	for _, s := range targets {
		if !strings.HasSuffix(s, " (deleted)") {
			return false
		}
	}
	return true
}

// A roster being uploaded is spooled to a file that no path reaches: a
// crash (or SIGKILL) of impactd mid-upload leaves no copy of raw subject
// ids at rest, because the kernel frees an unlinked file with its last
// descriptor.
func TestUploadSpoolIsUnlinked(t *testing.T) {
	dir := t.TempDir()
	e := startEnvWith(t, impacttest.Options{Config: server.Config{UploadDir: dir, RequestTimeout: 30 * time.Second}}, clientCreds{})
	ctx, cancel := context.WithCancel(testclient.WithToken(context.Background(), e.adminTk))
	defer cancel()
	stream, err := impactv1.NewSnapshotServiceClient(e.admin).UploadSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roster := testclient.DemoRoster(t, demo.RosterOptions{})
	if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_Header{
		Header: &impactv1.UploadHeader{IncidentId: demo.IncidentID, Spec: testclient.DemoSpec(t)}}}); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_RosterChunk{RosterChunk: roster[:len(roster)/2]}}); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) until the server holds the spool open mid-upload and
	// has unlinked it (the spool is created, then unlinked at once: a
	// spool never unlinked keeps this loop waiting until it fails).
	var spools []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		spools = openSpools(t, dir)
		if len(spools) > 0 && allDeleted(spools) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload spools open mid-upload: %q; want one, unlinked (\" (deleted)\")", spools)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("upload dir mid-upload: %v entries, err %v; want none", len(ents), err)
	}
	// The upload still completes from the unlinked spool (both passes).
	if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_RosterChunk{RosterChunk: roster[len(roster)/2:]}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if resp.GetSnapshot().GetVersion() != 1 || resp.GetSnapshot().GetEntries() == 0 {
		t.Fatalf("upload staged %v", resp.GetSnapshot())
	}
}

// Spools a crashed earlier release left linked are removed when impactd
// starts; nothing else in the upload directory is touched.
func TestStaleSpoolsRemovedOnStart(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"roster-123.csv", "impact-roster-456", "keep.txt"} {
		impacttest.WriteFile(t, dir, name, []byte("subject_id,status,cohorts,practice_id\n"))
	}
	impacttest.Start(t, impacttest.Options{Config: server.Config{UploadDir: dir}}).WaitReady(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "keep.txt" {
		t.Fatalf("upload dir after start: %v, want only keep.txt", names)
	}
}
