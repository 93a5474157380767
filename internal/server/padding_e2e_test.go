package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// wireStats records, for the calls of a client connection, the response
// message's length on the wire and its compression.
type wireStats struct {
	mu          sync.Mutex
	wire        int
	compression string
}

func (w *wireStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (w *wireStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (w *wireStats) HandleConn(context.Context, stats.ConnStats) {}
func (w *wireStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		w.compression = s.Compression
	case *stats.InPayload:
		w.wire = s.WireLength
	}
}

func (w *wireStats) last() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wire, w.compression
}

// sizeOf checks that every answer of a kind has one size.
type sizeOf map[string]int

func (s sizeOf) add(t *testing.T, kind, who string, n int) {
	t.Helper()
	if want, ok := s[kind]; ok && n != want {
		t.Fatalf("%s: %s is %d bytes, the others %d", kind, who, n, want)
	}
	s[kind] = n
}

// TestPaddedAnswersOnTheWire: invariant 12 over both transports of a real
// server. Two incidents (the demo spec and a copy with other texts), the
// patients of every kind (affected in one cohort or two, under review,
// absent), notified or not, at an older version with an update pending (a
// correction to not affected, a move to under review) or not: every
// GetMyStatus answer of an incident has one size on gRPC (bytes on the
// wire, uncompressed even when the client sends gzip) and one REST body
// length (uncompressed even when the client accepts gzip); the
// ListMyStatuses answers have one size too. The bodies still decode, and
// the REST and gRPC answers say the same but for the padding.
func TestPaddedAnswersOnTheWire(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	snapshots := impactv1.NewSnapshotServiceClient(e.admin)
	notices := impactv1.NewNoticeServiceClient(e.admin)

	const other = "mmh-2026-01"
	spec := testclient.DemoSpec(t)
	otherSpec := bytes.ReplaceAll(bytes.ReplaceAll(spec, []byte(demo.IncidentID), []byte(other)),
		[]byte("Kia ora,"), []byte(`Kia ora "koutou" \ Tēnā koutou katoa,`))
	for _, up := range []struct {
		incident string
		spec     []byte
		roster   map[string]row
	}{{demo.IncidentID, spec, rosterV1()}, {other, otherSpec, rosterV2()}} {
		if _, err := testclient.Upload(ctx, snapshots, up.incident, up.spec, []byte(csvOf(up.roster)), 100); err != nil {
			t.Fatal(err)
		}
		if _, err := testclient.Publish(ctx, snapshots, up.incident, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(incident string, subjects ...int) {
		t.Helper()
		for _, i := range subjects {
			if _, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: incident, SubjectId: sid(i), IdempotencyKey: fmt.Sprint(incident, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Notified at v1: affected (0, 2, 4, 6, 16), under review (30).
	claim(demo.IncidentID, 0, 2, 4, 6, 16, 30)
	claim(other, 4, 34)
	// v2 corrects 6 to not affected, moves 2 to under review, puts 4 in two
	// cohorts; 2 is notified again at v2.
	if _, err := testclient.Upload(ctx, snapshots, demo.IncidentID, spec, []byte(csvOf(rosterV2())), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := testclient.Publish(ctx, snapshots, demo.IncidentID, 2, 1); err != nil {
		t.Fatal(err)
	}
	claim(demo.IncidentID, 2, 36)

	ws := &wireStats{}
	conn, err := grpc.NewClient(e.Addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(ws),
		grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	patients := impactv1.NewStatusServiceClient(conn)
	sizes := sizeOf{}
	var pending, notified int
	for i := 0; i < 40; i++ {
		s := sid(i)
		tok := e.Token(t, s)
		pctx := testclient.WithToken(context.Background(), tok)
		var viaGRPC []*impactv1.StatusAnswer
		for _, incident := range []string{demo.IncidentID, other} {
			g, err := patients.GetMyStatus(pctx, &impactv1.GetMyStatusRequest{IncidentId: incident})
			if err != nil {
				t.Fatalf("%s %s: %v", s, incident, err)
			}
			wire, comp := ws.last()
			if comp != "" && comp != "identity" {
				t.Fatalf("%s: answer compressed with %q", s, comp)
			}
			sizes.add(t, "gRPC "+incident, s, wire)
			if wire != 5+proto.Size(g) { // the message and its 5-byte gRPC prefix
				t.Fatalf("%s: %d bytes on the wire, the message is %d", s, wire, proto.Size(g))
			}
			code, hdr, body := call(t, http.DefaultClient, "GET", "http://"+e.Addrs.HTTP+"/v1/incidents/"+incident+"/status", tok, "", "Accept-Encoding", "gzip")
			if code != 200 || hdr.Get("Content-Encoding") != "" {
				t.Fatalf("%s REST: %d %v %s", s, code, hdr, body)
			}
			sizes.add(t, "REST "+incident, s, len(body))
			// (Go's client asks for gzip and inflates silently unless the
			// request asks itself: it does, so the body is what was sent.)
			var r impactv1.StatusAnswer
			if err := protojson.Unmarshal(body, &r); err != nil {
				t.Fatal(err)
			}
			a := g.GetAnswer()
			if !proto.Equal(unpadded(t, a), unpadded(t, &r)) {
				t.Fatalf("%s: gRPC and REST differ:\n%v\n%v", s, a, &r)
			}
			if a.GetUpdatePending() {
				pending++
			}
			if a.GetNotifiedVersion() > 0 {
				notified++
			}
			viaGRPC = append(viaGRPC, a)
		}
		l, err := patients.ListMyStatuses(pctx, &impactv1.ListMyStatusesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		wire, _ := ws.last()
		sizes.add(t, "gRPC list", s, wire)
		for j, a := range l.GetStatuses() {
			if !proto.Equal(a, viaGRPC[j]) {
				t.Fatalf("%s: list entry %v, GetMyStatus %v", s, a, viaGRPC[j])
			}
		}
		code, hdr, body := call(t, http.DefaultClient, "GET", "http://"+e.Addrs.HTTP+"/v1/status", tok, "", "Accept-Encoding", "gzip")
		if code != 200 || hdr.Get("Content-Encoding") != "" {
			t.Fatalf("%s REST list: %d %v", s, code, hdr)
		}
		sizes.add(t, "REST list", s, len(body))
	}
	if pending < 2 || notified < 8 {
		t.Fatalf("the timeline should leave pending updates and notified patients: %d, %d", pending, notified)
	}
	t.Logf("sizes: %v", sizes)
}

// unpadded is a copy of a without its padding, which must be spaces.
func unpadded(t *testing.T, a *impactv1.StatusAnswer) *impactv1.StatusAnswer {
	t.Helper()
	if strings.Trim(a.GetPadding(), " ") != "" {
		t.Fatalf("padding is not spaces: %q", a.GetPadding())
	}
	c := proto.CloneOf(a)
	c.Padding = ""
	return c
}
