// Package testclient holds the client side that tests of a running impactd
// share, whether the server runs in process (internal/testutil/impacttest)
// or as a process (internal/e2e): dialling, bearer tokens, the upload
// stream, publishing, REST calls, the demo files, and a buffer for logs written while
// the test reads them.
package testclient

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
)

// Dial connects to a gRPC listener with creds (nil: plaintext); the
// connection is closed when the test ends.
func Dial(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// WithToken adds the bearer token tok to the outgoing metadata of ctx.
func WithToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// Upload stages spec and roster for incident through the upload stream,
// sending the roster in chunks of chunk bytes (small chunks make rows
// straddle chunk boundaries).
func Upload(ctx context.Context, c impactv1.SnapshotServiceClient, incident string, spec, roster []byte, chunk int) (*impactv1.SnapshotInfo, error) {
	stream, err := c.UploadSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_Header{
		Header: &impactv1.UploadHeader{IncidentId: incident, Spec: spec}}}); err != nil {
		return nil, err
	}
	for b := roster; len(b) > 0; {
		n := min(len(b), chunk)
		if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_RosterChunk{RosterChunk: b[:n]}}); err != nil {
			return nil, err
		}
		b = b[n:]
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.GetSnapshot(), nil
}

// Publish makes version of incident visible, expecting expect to be
// visible, the way the runbook does: it reviews the corrections the diff
// reports (notified_changes) and accepts that many.
func Publish(ctx context.Context, c impactv1.SnapshotServiceClient, incident string, version, expect uint32) (*impactv1.PublishSnapshotResponse, error) {
	diff, err := c.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: incident, Version: version, Against: expect})
	if err != nil {
		return nil, err
	}
	return c.PublishSnapshot(ctx, &impactv1.PublishSnapshotRequest{IncidentId: incident, Version: version, ExpectedVisibleVersion: proto.Uint32(expect),
		AcceptCorrections: diff.GetNotifiedChanges().GetTotal()})
}

// REST does an HTTP request with client c, the bearer token tok (none if
// empty) and extra headers as name, value pairs, and returns the status
// code, the headers and the body.
func REST(t testing.TB, c *http.Client, method, url, tok, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, b
}

// DemoSpec is the demo incident's spec.
func DemoSpec(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := demo.WriteSpec(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// DemoRoster is a demo roster as opts describe it.
func DemoRoster(t testing.TB, opts demo.RosterOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := demo.WriteRoster(&b, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// LogBuffer collects what a server or process writes; String may be called
// while it still writes.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
