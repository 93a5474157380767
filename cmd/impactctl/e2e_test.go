package main

// End-to-end tests of the client code through a real gRPC connection, to a
// small in-test server with real behaviour for what the tests check: it
// reassembles uploads, keeps a visible version with compare-and-set, and
// keeps an idempotent claim ledger.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
)

const testToken = "test-token"

type fakeServer struct {
	impactv1.UnimplementedSnapshotServiceServer
	impactv1.UnimplementedNoticeServiceServer

	mu sync.Mutex
	// Uploads.
	header     *impactv1.UploadHeader
	chunkSizes []int
	roster     []byte
	headerLast bool // a header arrived after a chunk
	// Versions.
	visible uint32
	staged  map[uint32]bool
	next    uint32
	// Ledger: idempotency key -> answer, subject -> notified.
	answers  map[string]*impactv1.Claim
	notified map[string]bool
	sends    int
	// failAfter, when > 0, fails ClaimNotices after that many answers.
	failAfter int
}

func newFakeServer() *fakeServer {
	return &fakeServer{staged: map[uint32]bool{}, next: 1, answers: map[string]*impactv1.Claim{}, notified: map[string]bool{}}
}

func (s *fakeServer) UploadSnapshot(stream grpc.ClientStreamingServer[impactv1.UploadSnapshotRequest, impactv1.UploadSnapshotResponse]) error {
	var header *impactv1.UploadHeader
	var roster bytes.Buffer
	var sizes []int
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch p := req.GetPart().(type) {
		case *impactv1.UploadSnapshotRequest_Header:
			if header != nil || roster.Len() > 0 {
				s.mu.Lock()
				s.headerLast = true
				s.mu.Unlock()
			}
			header = p.Header
		case *impactv1.UploadSnapshotRequest_RosterChunk:
			sizes = append(sizes, len(p.RosterChunk))
			roster.Write(p.RosterChunk)
		}
	}
	if header == nil {
		return status.Error(codes.InvalidArgument, "header missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header, s.roster, s.chunkSizes = header, roster.Bytes(), sizes
	// A roster row "bad" is rejected, as the real validation would.
	if i := bytes.Index(roster.Bytes(), []byte("\nbad,")); i >= 0 {
		row := bytes.Count(roster.Bytes()[:i+1], []byte("\n")) + 1
		st, _ := status.New(codes.InvalidArgument, "roster rejected: 1 error").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fmt.Sprintf("row %d: status", row), Description: "must be affected or under_review"}},
		})
		return st.Err()
	}
	v := s.next
	s.next++
	s.staged[v] = true
	return stream.SendAndClose(&impactv1.UploadSnapshotResponse{Snapshot: &impactv1.SnapshotInfo{
		IncidentId: header.GetIncidentId(), Version: v, State: impactv1.SnapshotState_STAGED,
		Digest: "00112233445566778899", Entries: uint32(bytes.Count(roster.Bytes(), []byte("\n")) - 1),
	}})
}

func (s *fakeServer) ListSnapshots(_ context.Context, req *impactv1.ListSnapshotsRequest) (*impactv1.ListSnapshotsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &impactv1.ListSnapshotsResponse{VisibleVersion: s.visible}, nil
}

func (s *fakeServer) PublishSnapshot(_ context.Context, req *impactv1.PublishSnapshotRequest) (*impactv1.PublishSnapshotResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.ExpectedVisibleVersion == nil {
		return nil, status.Error(codes.InvalidArgument, "expected_visible_version is required")
	}
	if !s.staged[req.GetVersion()] {
		return nil, status.Errorf(codes.FailedPrecondition, "version %d is not staged", req.GetVersion())
	}
	if exp := req.GetExpectedVisibleVersion(); exp != s.visible {
		return nil, status.Errorf(codes.FailedPrecondition, "visible version is %d, not %d", s.visible, exp)
	}
	prev := s.visible
	s.visible = req.GetVersion()
	delete(s.staged, req.GetVersion())
	return &impactv1.PublishSnapshotResponse{PreviousVisibleVersion: prev, Snapshot: &impactv1.SnapshotInfo{
		IncidentId: req.GetIncidentId(), Version: s.visible, State: impactv1.SnapshotState_PUBLISHED, Visible: true,
	}}, nil
}

// claim decides like the real ledger, for what these tests need: the same
// idempotency key gets the same answer; a subject is sent one notice;
// subjects named "nobody-*" are not affected.
func (s *fakeServer) claim(incident, subject, key string) *impactv1.Claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.answers[key]; ok {
		return c
	}
	var c *impactv1.Claim
	switch {
	case strings.HasPrefix(subject, "nobody"):
		c = &impactv1.Claim{Action: impactv1.ClaimAction_NONE, IncidentId: incident, Version: s.visible, Status: impactv1.Status_NOT_AFFECTED}
	case s.notified[subject]:
		c = &impactv1.Claim{Action: impactv1.ClaimAction_ALREADY_SENT, IncidentId: incident, Version: s.visible, Status: impactv1.Status_AFFECTED}
	default:
		s.notified[subject] = true
		s.sends++
		c = &impactv1.Claim{
			Action: impactv1.ClaimAction_SEND, IncidentId: incident, Version: s.visible, Status: impactv1.Status_AFFECTED,
			Cohorts:    []*impactv1.Cohort{{Id: "northland"}},
			Notice:     &impactv1.Notice{Subject: "Your health information was affected", Body: "Kia ora\n", SupportContact: "0800 000 011"},
			NoticeId:   fmt.Sprintf("n-%d", s.sends),
			NotifiedAt: timestamppb.New(time.Date(2025, 12, 20, 8, 0, 0, 0, time.UTC)),
		}
	}
	s.answers[key] = c
	return c
}

func (s *fakeServer) ClaimNotice(_ context.Context, req *impactv1.ClaimNoticeRequest) (*impactv1.ClaimNoticeResponse, error) {
	if req.GetIdempotencyKey() == "" {
		return nil, status.Error(codes.InvalidArgument, "idempotency_key is required")
	}
	return &impactv1.ClaimNoticeResponse{Claim: s.claim(req.GetIncidentId(), req.GetSubjectId(), req.GetIdempotencyKey())}, nil
}

func (s *fakeServer) ClaimNotices(stream grpc.BidiStreamingServer[impactv1.ClaimNoticesRequest, impactv1.ClaimNoticesResponse]) error {
	s.mu.Lock()
	failAfter := s.failAfter
	s.mu.Unlock()
	for n := 0; ; n++ {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if failAfter > 0 && n == failAfter {
			return status.Error(codes.Unavailable, "store unavailable")
		}
		c := s.claim(req.GetIncidentId(), req.GetSubjectId(), req.GetIdempotencyKey())
		if err := stream.Send(&impactv1.ClaimNoticesResponse{SubjectId: req.GetSubjectId(), Claim: c}); err != nil {
			return err
		}
	}
}

func (s *fakeServer) GetNoticeStats(_ context.Context, req *impactv1.GetNoticeStatsRequest) (*impactv1.GetNoticeStatsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &impactv1.GetNoticeStatsResponse{IncidentId: req.GetIncidentId(), VisibleVersion: s.visible, Notified: uint32(s.sends)}, nil
}

func (s *fakeServer) sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends
}

func checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+testToken {
		return status.Error(codes.Unauthenticated, "unauthenticated")
	}
	return nil
}

// startServer serves a fakeServer on a loopback port and returns it with
// its address.
func startServer(t *testing.T) (*fakeServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkToken(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkToken(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	fs := newFakeServer()
	impactv1.RegisterSnapshotServiceServer(srv, fs)
	impactv1.RegisterNoticeServiceServer(srv, fs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return fs, lis.Addr().String()
}

// ctl runs impactctl in-process against addr with the test token.
func ctl(t *testing.T, addr string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"IMPACT_ADDR": addr, "IMPACT_TOKEN": testToken}
	a := newApp(&out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	code = a.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

func TestUploadChunks(t *testing.T) {
	fs, addr := startServer(t)
	dir := t.TempDir()
	code, _, stderr := ctl(t, addr, "demo", "--out", dir, "--n", "5000")
	if code != 0 {
		t.Fatalf("demo: %d %s", code, stderr)
	}
	roster, _ := os.ReadFile(filepath.Join(dir, "roster.csv"))
	spec, _ := os.ReadFile(filepath.Join(dir, "spec.yaml"))
	if len(roster) <= 2*uploadChunkSize {
		t.Fatalf("roster of %d bytes too small to test chunking", len(roster))
	}
	fs.mu.Lock()
	fs.visible = 4
	fs.mu.Unlock()
	code, stdout, stderr := ctl(t, addr, "snapshot", "upload", "--incident", demo.IncidentID,
		"--spec", filepath.Join(dir, "spec.yaml"), "--roster", filepath.Join(dir, "roster.csv"))
	if code != 0 {
		t.Fatalf("upload: exit %d: %s", code, stderr)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.headerLast || fs.header.GetIncidentId() != demo.IncidentID || !bytes.Equal(fs.header.GetSpec(), spec) {
		t.Errorf("header not sent first with the incident and spec")
	}
	if !bytes.Equal(fs.roster, roster) {
		t.Errorf("server reassembled %d bytes, want the %d of the roster", len(fs.roster), len(roster))
	}
	for i, n := range fs.chunkSizes {
		if n > uploadChunkSize || (n != uploadChunkSize && i != len(fs.chunkSizes)-1) {
			t.Errorf("chunk %d has %d bytes: want %d except the last", i, n, uploadChunkSize)
		}
	}
	if !strings.Contains(stdout, "staged mmh-2025-12 v1") || !strings.Contains(stdout, "5,000 entries") ||
		!strings.Contains(stdout, "snapshot publish --incident mmh-2025-12 --version 1 --expect 4\n") {
		t.Errorf("upload output:\n%s", stdout)
	}
}

func TestUploadRejectedPrintsViolations(t *testing.T) {
	_, addr := startServer(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.yaml")
	roster := filepath.Join(dir, "roster.csv")
	os.WriteFile(spec, []byte("incident: {id: x}\n"), 0o600)
	os.WriteFile(roster, []byte("subject_id,status,cohorts,practice_id\na,affected,uploads,\nbad,wrong,uploads,\n"), 0o600)
	code, stdout, stderr := ctl(t, addr, "snapshot", "upload", "--incident", "x", "--spec", spec, "--roster", roster)
	if code != exitError || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	want := "ROW  FIELD   RULE\n" +
		"3    status  must be affected or under_review\n" +
		"impactctl: upload: roster rejected: 1 error (INVALID_ARGUMENT)\n"
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
}

func TestPublishCompareAndSet(t *testing.T) {
	fs, addr := startServer(t)
	fs.mu.Lock()
	fs.staged[1], fs.staged[2], fs.next = true, true, 3
	fs.mu.Unlock()

	// Without --expect: the visible version (none) is read and expected.
	code, stdout, stderr := ctl(t, addr, "snapshot", "publish", "--incident", "x", "--version", "1")
	if code != 0 || !strings.HasPrefix(stdout, "published x v1 (visible was none)") {
		t.Fatalf("publish v1: exit %d\n%s%s", code, stdout, stderr)
	}
	// A stale --expect loses the compare-and-set.
	code, _, stderr = ctl(t, addr, "snapshot", "publish", "--incident", "x", "--version", "2", "--expect", "0")
	if code != exitError || stderr != "impactctl: publish: visible version is 1, not 0 (FAILED_PRECONDITION)\n" {
		t.Errorf("stale expect: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = ctl(t, addr, "snapshot", "publish", "--incident", "x", "--version", "3")
	if code != exitError || stderr != "impactctl: publish: version 3 is not staged (FAILED_PRECONDITION)\n" {
		t.Errorf("unstaged: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ = ctl(t, addr, "--json", "snapshot", "publish", "--incident", "x", "--version", "2", "--expect", "1")
	var resp struct {
		Previous int `json:"previous_visible_version"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &resp) != nil || resp.Previous != 1 {
		t.Errorf("json publish: exit %d\n%s", code, stdout)
	}
}

func TestErrorsAndUsage(t *testing.T) {
	_, addr := startServer(t)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--token", "wrong", "notice", "stats", "--incident", "x"}, exitError,
			"impactctl: stats: unauthenticated; check --token or IMPACT_TOKEN; with impactd --dev, mint it with the same --data-dir/IMPACT_DATA_DIR as impactd (UNAUTHENTICATED)\n"},
		{[]string{"snapshot", "list"}, exitUsage,
			"impactctl: required flag(s) \"incident\" not set (see 'impactctl snapshot list --help')\n"},
		{[]string{"notice", "claim", "--incident", "x", "--subject", "a", "--cohort", "c"}, exitUsage,
			"impactctl: claim: --cohort needs --roster (see 'impactctl notice claim --help')\n"},
		{[]string{"notice", "claim", "--incident", "x", "--roster", "missing.csv", "--out", "o"}, exitError,
			"impactctl: claim: open missing.csv: no such file or directory\n"},
	}
	for _, tt := range tests {
		code, _, stderr := ctl(t, addr, tt.args...)
		if code != tt.code || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q\nwant exit %d, %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}

func TestClaimOne(t *testing.T) {
	fs, addr := startServer(t)
	args := []string{"notice", "claim", "--incident", "x", "--subject", "p-1"}
	code, stdout, stderr := ctl(t, addr, append(args, "--idempotency-key", "k1")...)
	if code != 0 || !strings.Contains(stdout, "SEND") || !strings.Contains(stdout, "n-1") || !strings.Contains(stdout, "Kia ora") {
		t.Fatalf("claim: exit %d\n%s%s", code, stdout, stderr)
	}
	// Same key: same answer. Default keys are random: a new claim.
	_, again, _ := ctl(t, addr, append(args, "--idempotency-key", "k1")...)
	_, fresh, _ := ctl(t, addr, args...)
	if again != stdout || !strings.Contains(fresh, "ALREADY_SENT") {
		t.Errorf("replay:\n%s\nfresh:\n%s", again, fresh)
	}
	if n := fs.sent(); n != 1 {
		t.Errorf("%d notices sent, want 1", n)
	}
}

func writeRoster(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("subject_id,status,cohorts,practice_id\n")
	for i := range 3000 {
		cohort := "referrals"
		if i%3 == 0 {
			cohort = "northland;uploads"
		}
		name := "p"
		if i%100 == 7 {
			name = "nobody" // the test server says not affected
		}
		fmt.Fprintf(&b, "%s-%04d,affected,%s,\n", name, i, cohort)
	}
	path := filepath.Join(dir, "roster.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWaveEndToEnd(t *testing.T) {
	fs, addr := startServer(t)
	dir := t.TempDir()
	roster := writeRoster(t, dir)
	out := filepath.Join(dir, "wave1.jsonl")
	args := []string{"notice", "claim", "--incident", "mmh-2025-12", "--roster", roster, "--cohort", "northland", "--out", out}

	code, stdout, stderr := ctl(t, addr, args...)
	if code != 0 {
		t.Fatalf("wave: exit %d: %s", code, stderr)
	}
	// 1000 northland rows (every third), 10 of them "nobody".
	first := readLines(t, out)
	if len(first) != 990 {
		t.Fatalf("outbox has %d lines, want 990", len(first))
	}
	for i, l := range first {
		if l.IncidentID != "mmh-2025-12" || l.NoticeID == "" || l.Status != "AFFECTED" || !strings.HasPrefix(l.SubjectID, "p-") {
			t.Fatalf("line %d: %+v", i+1, l)
		}
	}
	if !strings.Contains(stdout, "1,000 claims") || !strings.Contains(stdout, "send          990") ||
		!strings.Contains(stdout, "none          10") {
		t.Errorf("summary:\n%s", stdout)
	}
	sends := fs.sent()

	// The same wave again (say after a crash): same answers, nothing new.
	code, _, stderr = ctl(t, addr, args...)
	if code != 0 {
		t.Fatalf("re-run: exit %d: %s", code, stderr)
	}
	again := readLines(t, out)
	if fmt.Sprint(again) != fmt.Sprint(first) {
		t.Error("re-running the wave changed the outbox")
	}
	if n := fs.sent(); n != sends {
		t.Errorf("re-run sent %d new notices", n-sends)
	}

	// Another wave id: the server says already sent; the outbox is empty.
	code, stdout, _ = ctl(t, addr, "--json", "notice", "claim", "--incident", "mmh-2025-12", "--roster", roster,
		"--cohort", "northland", "--out", out, "--wave-id", "wave-b")
	if code != 0 || len(readLines(t, out)) != 0 || !strings.Contains(stdout, `"already_sent": 990`) {
		t.Errorf("second wave id: exit %d\n%s", code, stdout)
	}
}

func TestWaveFailureKeepsClaims(t *testing.T) {
	fs, addr := startServer(t)
	fs.mu.Lock()
	fs.failAfter = 500
	fs.mu.Unlock()
	dir := t.TempDir()
	roster := writeRoster(t, dir)
	out := filepath.Join(dir, "wave.jsonl")
	args := []string{"notice", "claim", "--incident", "x", "--roster", roster, "--out", out}
	code, _, stderr := ctl(t, addr, args...)
	if code != exitError || !strings.Contains(stderr, "store unavailable (UNAVAILABLE)") ||
		!strings.Contains(stderr, "claimed notices kept in "+out+".tmp") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	kept := readLines(t, out+".tmp")
	if n := fs.sent(); len(kept) != n || n == 0 || n > 500 {
		t.Errorf("kept %d notices, server sent %d", len(kept), n)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a failed wave wrote the outbox")
	}
	// Re-run once the server is back: the whole wave, the same notices.
	fs.mu.Lock()
	fs.failAfter = 0
	fs.mu.Unlock()
	if code, _, stderr := ctl(t, addr, args...); code != 0 {
		t.Fatalf("re-run: %s", stderr)
	}
	all := readLines(t, out)
	if len(all) != 2970 || fmt.Sprint(all[:len(kept)]) != fmt.Sprint(kept) {
		t.Errorf("re-run outbox has %d lines; first ones equal to the kept ones: %v", len(all), fmt.Sprint(all[:len(kept)]) == fmt.Sprint(kept))
	}
}

func TestWaveUnknownCohort(t *testing.T) {
	_, addr := startServer(t)
	dir := t.TempDir()
	code, _, stderr := ctl(t, addr, "notice", "claim", "--incident", "x", "--roster", writeRoster(t, dir), "--cohort", "nortland", "--out", filepath.Join(dir, "o"))
	if code != exitError || stderr != "impactctl: claim: no roster row is in cohort \"nortland\"\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "o.tmp")); !os.IsNotExist(err) {
		t.Error("an empty wave left a file")
	}
}
