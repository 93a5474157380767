package main

// End-to-end tests of the client code through a real gRPC connection. They
// run against the real in-process impactd (startImpactd, ops_test.go),
// except two that need what a real server cannot do, and use faultServer:
//
//   - TestUploadChunks observes how the upload stream was cut into chunks,
//     which the real server does not report;
//   - TestWaveFailureKeepsClaims needs the claim stream to fail part way
//     through a wave, on cue.

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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

const testToken = "test-token"

// faultServer is an ops server for the two tests above: it records how an
// upload arrived and stages it, reports the visible version, and keeps an
// idempotent claim ledger whose wave stream can fail after failAfter claims.
type faultServer struct {
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
	next    uint32
	// Ledger: idempotency key -> answer, subject -> notified.
	answers  map[string]*impactv1.Claim
	notified map[string]bool
	sends    int
	// failAfter, when > 0, fails ClaimNotices after that many answers.
	failAfter int
}

func newFaultServer() *faultServer {
	return &faultServer{next: 1, answers: map[string]*impactv1.Claim{}, notified: map[string]bool{}}
}

func (s *faultServer) UploadSnapshot(stream grpc.ClientStreamingServer[impactv1.UploadSnapshotRequest, impactv1.UploadSnapshotResponse]) error {
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
	v := s.next
	s.next++
	return stream.SendAndClose(&impactv1.UploadSnapshotResponse{Snapshot: &impactv1.SnapshotInfo{
		IncidentId: header.GetIncidentId(), Version: v, State: impactv1.SnapshotState_STAGED,
		Digest: "00112233445566778899", Entries: uint32(bytes.Count(roster.Bytes(), []byte("\n")) - 1),
	}})
}

func (s *faultServer) ListSnapshots(_ context.Context, req *impactv1.ListSnapshotsRequest) (*impactv1.ListSnapshotsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &impactv1.ListSnapshotsResponse{VisibleVersion: s.visible}, nil
}

// claim decides like the real ledger, for what these tests need: the same
// idempotency key gets the same answer; a subject is sent one notice;
// subjects named "nobody-*" are not affected.
func (s *faultServer) claim(incident, subject, key string) *impactv1.Claim {
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

func (s *faultServer) ClaimNotices(stream grpc.BidiStreamingServer[impactv1.ClaimNoticesRequest, impactv1.ClaimNoticesResponse]) error {
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

func (s *faultServer) sent() int {
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

// startFaultServer serves a faultServer on a loopback port and returns it with
// its address.
func startFaultServer(t *testing.T) (*faultServer, string) {
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
	fs := newFaultServer()
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
	fs, addr := startFaultServer(t)
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
	d := startImpactd(t, impacttest.Options{})
	dir := t.TempDir()
	spec, _ := demoFiles(t, dir, 2)
	roster := filepath.Join(dir, "bad.csv")
	os.WriteFile(roster, []byte("subject_id,status,cohorts,practice_id\na,affected,uploads,\nbad,wrong,uploads,\n"), 0o600)
	code, stdout, stderr := d.run(t, "snapshot", "upload", "--incident", demo.IncidentID, "--spec", spec, "--roster", roster)
	if code != exitError || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	want := "ROW  FIELD   RULE\n" +
		"3    status  must be affected or under_review\n" +
		"impactctl: upload: roster rejected: 1 error; row 3, status: must be affected or under_review (INVALID_ARGUMENT)\n"
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
}

func TestPublishCompareAndSet(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	spec, roster := demoFiles(t, t.TempDir(), 20)
	inc := demo.IncidentID
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", roster)

	// Without --expect: the visible version (none) is read and expected.
	code, stdout, stderr := d.run(t, "snapshot", "publish", "--incident", inc, "--version", "1")
	if code != 0 || !strings.HasPrefix(stdout, "published "+inc+" v1 (visible was none)") {
		t.Fatalf("publish v1: exit %d\n%s%s", code, stdout, stderr)
	}
	// A stale --expect loses the compare-and-set, and says how to go on.
	code, _, stderr = d.run(t, "snapshot", "publish", "--incident", inc, "--version", "2", "--expect", "0")
	if want := "impactctl: publish: the visible version is now v1, not v0 (you reviewed against v0): review 'impactctl snapshot diff --incident " + inc +
		" --version 2 --against 1', then re-run with --expect 1 (FAILED_PRECONDITION)\n"; code != exitError || stderr != want {
		t.Errorf("stale expect: exit %d, stderr %q\nwant %q", code, stderr, want)
	}
	code, _, stderr = d.run(t, "snapshot", "publish", "--incident", inc, "--version", "3")
	if want := "impactctl: publish: " + inc + " v3 not found; see 'impactctl snapshot list --incident " + inc + "' (NOT_FOUND)\n"; code != exitError || stderr != want {
		t.Errorf("unknown version: exit %d, stderr %q\nwant %q", code, stderr, want)
	}
	code, stdout, _ = d.run(t, "--json", "snapshot", "publish", "--incident", inc, "--version", "2", "--expect", "1")
	var resp struct {
		Previous int `json:"previous_visible_version"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &resp) != nil || resp.Previous != 1 {
		t.Errorf("json publish: exit %d\n%s", code, stdout)
	}
}

func TestErrorsAndUsage(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
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
		code, _, stderr := d.run(t, tt.args...)
		if code != tt.code || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q\nwant exit %d, %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}

func TestClaimOne(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	d.publishDemo(t, 20)
	inc := demo.IncidentID
	args := []string{"notice", "claim", "--incident", inc, "--subject", demo.AffectedSubject}
	code, stdout, stderr := d.run(t, append(args, "--idempotency-key", "k1")...)
	if code != 0 || !strings.Contains(stdout, "SEND") || !strings.Contains(stdout, "notice id") || !strings.Contains(stdout, "support") {
		t.Fatalf("claim: exit %d\n%s%s", code, stdout, stderr)
	}
	// Same key: same answer. Default keys are random: a new claim.
	_, again, _ := d.run(t, append(args, "--idempotency-key", "k1")...)
	_, fresh, _ := d.run(t, args...)
	if again != stdout || !strings.Contains(fresh, "ALREADY_SENT") {
		t.Errorf("replay:\n%s\nfresh:\n%s", again, fresh)
	}
	if n := d.notified(t, inc); n != 1 {
		t.Errorf("%d subjects notified, want 1", n)
	}
}

// notified is how many subjects of incident the ledger holds as notified.
func (d *impactd) notified(t *testing.T, incident string) int {
	t.Helper()
	var st struct {
		Notified int `json:"notified"`
	}
	if err := json.Unmarshal([]byte(d.ctl(t, 0, "--json", "notice", "stats", "--incident", incident)), &st); err != nil {
		t.Fatal(err)
	}
	return st.Notified
}

// writeRoster writes the wave's roster of 3000 affected rows (every third
// in northland), and the roster to publish: the same without the rows of
// subjects named "nobody-*", whom the server then finds not affected.
func writeRoster(t *testing.T, dir string) (wave, published string) {
	t.Helper()
	var all, pub strings.Builder
	all.WriteString("subject_id,status,cohorts,practice_id\n")
	pub.WriteString("subject_id,status,cohorts,practice_id\n")
	for i := range 3000 {
		cohort := "referrals"
		if i%3 == 0 {
			cohort = "northland;uploads"
		}
		name := "p"
		if i%100 == 7 {
			name = "nobody"
		}
		row := fmt.Sprintf("%s-%04d,affected,%s,\n", name, i, cohort)
		all.WriteString(row)
		if name == "p" {
			pub.WriteString(row)
		}
	}
	wave, published = filepath.Join(dir, "roster.csv"), filepath.Join(dir, "published.csv")
	if err := os.WriteFile(wave, []byte(all.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(published, []byte(pub.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return wave, published
}

func TestWaveEndToEnd(t *testing.T) {
	d := startImpactd(t, impacttest.Options{})
	dir := t.TempDir()
	roster, published := writeRoster(t, dir)
	spec, _ := demoFiles(t, t.TempDir(), 2)
	inc := demo.IncidentID
	d.ctl(t, 0, "snapshot", "upload", "--incident", inc, "--spec", spec, "--roster", published)
	d.ctl(t, 0, "snapshot", "publish", "--incident", inc, "--version", "1")
	out := filepath.Join(dir, "wave1.jsonl")
	args := []string{"notice", "claim", "--incident", inc, "--roster", roster, "--cohort", "northland", "--out", out}

	code, stdout, stderr := d.run(t, args...)
	if code != 0 {
		t.Fatalf("wave: exit %d: %s", code, stderr)
	}
	// 1000 northland rows (every third), 10 of them "nobody".
	first := readLines(t, out)
	if len(first) != 990 {
		t.Fatalf("outbox has %d lines, want 990", len(first))
	}
	for i, l := range first {
		if l.IncidentID != inc || l.NoticeID == "" || l.Status != "AFFECTED" || !strings.HasPrefix(l.SubjectID, "p-") {
			t.Fatalf("line %d: %+v", i+1, l)
		}
	}
	if !strings.Contains(stdout, "1,000 claims") || !strings.Contains(stdout, "send          990") ||
		!strings.Contains(stdout, "none          10") {
		t.Errorf("summary:\n%s", stdout)
	}
	sends := d.notified(t, inc)
	if sends != 990 {
		t.Errorf("%d notified after the wave, want 990", sends)
	}

	// The same wave again (say after a crash): same answers, nothing new,
	// and the summary and the audit trail say so.
	code, stdout, stderr = d.run(t, args...)
	if code != 0 {
		t.Fatalf("re-run: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "send          0 ") || !strings.Contains(stdout, "replayed      990 ") {
		t.Errorf("re-run summary: want 0 new and 990 replayed:\n%s", stdout)
	}
	if _, audit, _ := d.run(t, "audit", "--incident", inc); !strings.Contains(audit, "1000 claims: send 0 new, 990 replayed, already sent 0, none 10") {
		t.Errorf("the re-run's audit event does not count replays apart:\n%s", audit)
	}
	again := readLines(t, out)
	if fmt.Sprint(again) != fmt.Sprint(first) {
		t.Error("re-running the wave changed the outbox")
	}
	if n := d.notified(t, inc); n != sends {
		t.Errorf("re-run notified %d more subjects", n-sends)
	}

	// Another wave id: the server says already sent; the outbox is empty.
	code, stdout, _ = d.run(t, "--json", "notice", "claim", "--incident", inc, "--roster", roster,
		"--cohort", "northland", "--out", out, "--wave-id", "wave-b")
	if code != 0 || len(readLines(t, out)) != 0 || !strings.Contains(stdout, `"already_sent": 990`) {
		t.Errorf("second wave id: exit %d\n%s", code, stdout)
	}
}

func TestWaveFailureKeepsClaims(t *testing.T) {
	fs, addr := startFaultServer(t)
	fs.mu.Lock()
	fs.failAfter = 500
	fs.mu.Unlock()
	dir := t.TempDir()
	roster, _ := writeRoster(t, dir)
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
	d := startImpactd(t, impacttest.Options{})
	dir := t.TempDir()
	roster, _ := writeRoster(t, dir)
	code, _, stderr := d.run(t, "notice", "claim", "--incident", "x", "--roster", roster, "--cohort", "nortland", "--out", filepath.Join(dir, "o"))
	if code != exitError || stderr != "impactctl: claim: no roster row is in cohort \"nortland\"\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "o.tmp")); !os.IsNotExist(err) {
		t.Error("an empty wave left a file")
	}
}
