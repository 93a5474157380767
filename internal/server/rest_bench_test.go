package server_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// BenchmarkListeners is one patient's status read through a whole
// server (embedded store, no telemetry), over its real listeners: REST
// (HTTP/1.1 keep-alive client, the gateway, the services) and gRPC for
// comparison. The client's cost is in both.
func BenchmarkListeners(b *testing.B) {
	e := impacttest.Start(b, impacttest.Options{})
	e.WaitReady(b)
	ctx := testclient.WithToken(context.Background(), e.Token(b, "ops-bench", auth.ScopeAdmin))
	snaps := impactv1.NewSnapshotServiceClient(testclient.Dial(b, e.Addrs.AdminGRPC, nil))
	roster := "subject_id,status,cohorts\npatient-0001,affected," + demo.CohortNorthland + "\npatient-0002,under_review,\n"
	info, err := testclient.Upload(ctx, snaps, demo.IncidentID, testclient.DemoSpec(b), []byte(roster), 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := testclient.Publish(ctx, snaps, demo.IncidentID, info.GetVersion(), 0); err != nil {
		b.Fatal(err)
	}
	tok := e.Token(b, "patient-0001")

	b.Run("REST", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer c.CloseIdleConnections()
		req, err := http.NewRequest("GET", "http://"+e.Addrs.HTTP+"/v1/incidents/"+demo.IncidentID+"/status", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.Run("gRPC", func(b *testing.B) {
		status := impactv1.NewStatusServiceClient(testclient.Dial(b, e.Addrs.GRPC, nil))
		ctx := testclient.WithToken(context.Background(), tok)
		req := &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := status.GetMyStatus(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkInprocCopy compares the two ways the in-process connection
// could give the handler its own request and the gateway its own answer:
// proto.Clone (plus proto.Size, for the message size limits) or marshal
// and unmarshal (what inproc.go does), on a real GetMyStatus exchange of an
// affected, notified patient.
func BenchmarkInprocCopy(b *testing.B) {
	e := impacttest.Start(b, impacttest.Options{})
	e.WaitReady(b)
	adminCtx := testclient.WithToken(context.Background(), e.Token(b, "ops-bench", auth.ScopeAdmin, auth.ScopeNotify))
	admin := testclient.Dial(b, e.Addrs.AdminGRPC, nil)
	snaps := impactv1.NewSnapshotServiceClient(admin)
	roster := "subject_id,status,cohorts\npatient-0001,affected," + demo.CohortNorthland + "\n"
	info, err := testclient.Upload(adminCtx, snaps, demo.IncidentID, testclient.DemoSpec(b), []byte(roster), 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := testclient.Publish(adminCtx, snaps, demo.IncidentID, info.GetVersion(), 0); err != nil {
		b.Fatal(err)
	}
	if _, err := impactv1.NewNoticeServiceClient(admin).ClaimNotice(adminCtx, &impactv1.ClaimNoticeRequest{
		IncidentId: demo.IncidentID, SubjectId: "patient-0001", IdempotencyKey: "bench-1"}); err != nil {
		b.Fatal(err)
	}
	req := &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID, AtLeastVersion: 1}
	resp, err := impactv1.NewStatusServiceClient(testclient.Dial(b, e.Addrs.GRPC, nil)).GetMyStatus(
		testclient.WithToken(context.Background(), e.Token(b, "patient-0001")), req)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name string
		msg  proto.Message
	}{{"request", req}, {"response", resp}} {
		b.Run(m.name+"/clone", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = proto.Size(m.msg)
				_ = proto.Clone(m.msg)
			}
		})
		b.Run(m.name+"/marshal", func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m.msg); err != nil {
					b.Fatal(err)
				}
				dst := m.msg.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(buf, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Logf("request %d bytes, response %d bytes", proto.Size(req), proto.Size(resp))
}
