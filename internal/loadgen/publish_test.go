package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// flakySnapshots is a SnapshotService test double for the harness's
// publish: every upload stages version 2; the first `fail` publishes come
// back UNAVAILABLE, and with applied, the first of them flips the visible
// version anyway (a reply that came too late).
type flakySnapshots struct {
	impactv1.UnimplementedSnapshotServiceServer
	fail    int
	applied bool

	mu        sync.Mutex
	visible   uint32
	publishes int
}

func (f *flakySnapshots) UploadSnapshot(s grpc.ClientStreamingServer[impactv1.UploadSnapshotRequest, impactv1.UploadSnapshotResponse]) error {
	for {
		if _, err := s.Recv(); errors.Is(err, io.EOF) {
			return s.SendAndClose(&impactv1.UploadSnapshotResponse{Snapshot: &impactv1.SnapshotInfo{Version: 2}})
		} else if err != nil {
			return err
		}
	}
}

func (f *flakySnapshots) PublishSnapshot(_ context.Context, r *impactv1.PublishSnapshotRequest) (*impactv1.PublishSnapshotResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishes++
	if r.GetExpectedVisibleVersion() != f.visible {
		return nil, grpcstatus.Error(codes.FailedPrecondition, "stale visible version")
	}
	if f.publishes <= f.fail {
		if f.applied && f.publishes == 1 {
			f.visible = r.GetVersion()
		}
		return nil, grpcstatus.Error(codes.Unavailable, "store unavailable: redis: i/o timeout")
	}
	f.visible = r.GetVersion()
	return &impactv1.PublishSnapshotResponse{}, nil
}

func (f *flakySnapshots) ListSnapshots(context.Context, *impactv1.ListSnapshotsRequest) (*impactv1.ListSnapshotsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &impactv1.ListSnapshotsResponse{VisibleVersion: f.visible}, nil
}

// TestPublishTriesAgainAfterUnavailable: a publish that comes back
// UNAVAILABLE is checked against the visible version and tried again; the
// report lists each retry; other errors and a third UNAVAILABLE end the run.
func TestPublishTriesAgainAfterUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      int
		applied   bool
		wantErr   string
		publishes int
		retries   int
	}{
		{name: "first attempt applied", fail: 1, applied: true, publishes: 1, retries: 1},
		{name: "first attempt not applied", fail: 1, publishes: 2, retries: 1},
		{name: "unavailable every time", fail: publishAttempts, wantErr: "Unavailable", publishes: publishAttempts, retries: publishAttempts - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flakySnapshots{fail: tc.fail, applied: tc.applied, visible: 1}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			impactv1.RegisterSnapshotServiceServer(srv, f)
			go func() { _ = srv.Serve(lis) }()
			defer srv.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			h := &harness{cfg: &Config{}, logw: io.Discard, adminConn: conn, adminCtx: context.Background(), visible: 1}

			_, err = h.publish(context.Background(), []byte("subject_id,status\n"), 2)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("publish: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("publish: %v, want an error with %q", err, tc.wantErr)
			}
			if f.publishes != tc.publishes || len(h.publishRetries) != tc.retries {
				t.Errorf("%d publishes, retries %q; want %d publishes, %d retries", f.publishes, h.publishRetries, tc.publishes, tc.retries)
			}
			if tc.wantErr == "" && (h.visible != 2 || f.visible != 2) {
				t.Errorf("visible: harness v%d, server v%d; want v2", h.visible, f.visible)
			}
		})
	}
}
