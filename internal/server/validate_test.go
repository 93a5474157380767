package server

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// TestEveryRequestFieldHasARule: every field of every request message of
// every impact.v1 method (and of the messages they nest) has a rule, and a
// zero request of each type is checked without a missing-rule error.
func TestEveryRequestFieldHasARule(t *testing.T) {
	_ = impactv1.File_impact_v1_status_proto // make sure the files are registered
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] || md.ParentFile().Package() != "impact.v1" {
			return
		}
		seen[md.FullName()] = true
		for i := 0; i < md.Fields().Len(); i++ {
			fd := md.Fields().Get(i)
			if _, ok := fieldRules[fd.FullName()]; !ok {
				t.Errorf("no validation rule for %s: add one to fieldRules", fd.FullName())
			}
			if fd.Message() != nil {
				walk(fd.Message())
			}
		}
	}
	methods := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("impact.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				methods++
				in := sd.Methods().Get(j).Input()
				walk(in)
				err := validateRequest(dynamicpb.NewMessage(in))
				var nr errNoRule
				if errors.As(err, &nr) {
					t.Errorf("%s: %v", in.FullName(), err)
				}
			}
		}
		return true
	})
	if methods < 10 {
		t.Fatalf("found %d methods: are the impact.v1 files registered?", methods)
	}
	for name := range fieldRules {
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(name); err != nil {
			t.Errorf("rule for unknown field %s", name)
		}
	}
}

func TestValidateRequestNoRule(t *testing.T) {
	// A message of the API with a field that has no rule is refused.
	saved := fieldRules["impact.v1.GetMyStatusRequest.at_least_version"]
	delete(fieldRules, "impact.v1.GetMyStatusRequest.at_least_version")
	defer func() { fieldRules["impact.v1.GetMyStatusRequest.at_least_version"] = saved }()
	err := validateRequest(&impactv1.GetMyStatusRequest{IncidentId: "a"})
	var nr errNoRule
	if !errors.As(err, &nr) {
		t.Fatalf("got %v, want errNoRule", err)
	}
}

// TestValidateRequestRules: the table is the only check of incident ids,
// expected visible versions, restore statuses and timestamps (no handler
// checks them again), so its answers are pinned here.
func TestValidateRequestRules(t *testing.T) {
	ok := &impactv1.RestoreNoticesRequest{IncidentId: "inc-1", SubjectId: "s", Version: 1, NoticeId: "n",
		Status: impactv1.Status_AFFECTED, NotifiedAt: timestamppb.Now()}
	noStatus := proto.Clone(ok).(*impactv1.RestoreNoticesRequest)
	noStatus.Status = impactv1.Status_STATUS_UNSPECIFIED
	noTime := proto.Clone(ok).(*impactv1.RestoreNoticesRequest)
	noTime.NotifiedAt = nil
	tests := []struct {
		name string
		req  proto.Message
		want string // "" : valid
	}{
		{"restore line", ok, ""},
		{"restore without status", noStatus, "invalid request: status is required (affected, under_review or not_affected)"},
		{"restore without notified_at", noTime, "invalid request: notified_at is required"},
		{"status of a bad incident", &impactv1.GetMyStatusRequest{IncidentId: "BAD_ID"}, "invalid request: incident_id must match [a-z0-9-]{1,64}"},
		{"publish without expectation", &impactv1.PublishSnapshotRequest{IncidentId: "inc-1", Version: 2}, "invalid request: expected_visible_version is required"},
		{"publish expecting nothing visible", &impactv1.PublishSnapshotRequest{IncidentId: "inc-1", Version: 1, ExpectedVisibleVersion: proto.Uint32(0)}, ""},
		{"rollback without expectation", &impactv1.RollbackSnapshotRequest{IncidentId: "inc-1", ToVersion: 1}, "invalid request: expected_visible_version is required"},
		{"audit of every incident", &impactv1.ListAuditEventsRequest{}, ""},
		{"audit of a bad incident", &impactv1.ListAuditEventsRequest{IncidentId: "x y"}, "invalid request: incident_id must match [a-z0-9-]{1,64}"},
		{"upload header", &impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_Header{Header: &impactv1.UploadHeader{IncidentId: "Inc", Spec: []byte("x")}}},
			"invalid request: header.incident_id must match [a-z0-9-]{1,64}"},
	}
	for _, tt := range tests {
		err := validateRequest(tt.req)
		if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestResolveClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	c, err := newClientAddrs("x-forwarded-for", proxies)
	if err != nil {
		t.Fatal(err)
	}
	none, _ := newClientAddrs("", nil)
	a := netip.MustParseAddr
	for _, tc := range []struct {
		c    *clientAddrs
		peer string
		fwd  []string
		want string
	}{
		{c, "203.0.113.1", []string{"198.51.100.1"}, "203.0.113.1"},                    // untrusted peer: header ignored
		{c, "10.1.1.1", []string{"198.51.100.1"}, "198.51.100.1"},                      // trusted proxy
		{c, "10.1.1.1", []string{"192.0.2.9, 198.51.100.1"}, "198.51.100.1"},           // right-most untrusted
		{c, "10.1.1.1", []string{"192.0.2.9, 198.51.100.1, 10.2.2.2"}, "198.51.100.1"}, // skip trusted hops
		{c, "10.1.1.1", []string{"192.0.2.9", "198.51.100.1:443"}, "198.51.100.1"},     // several header lines, port
		{c, "10.1.1.1", []string{"10.3.3.3"}, "10.1.1.1"},                              // only trusted hops
		{c, "10.1.1.1", []string{"192.0.2.9, garbage"}, "10.1.1.1"},                    // garbled hop: stop
		{c, "10.1.1.1", nil, "10.1.1.1"},
		{c, "fd00::1", []string{"[2001:db8::7]:80"}, "2001:db8::7"},
		{c, "::ffff:10.1.1.1", []string{"::ffff:198.51.100.1"}, "198.51.100.1"}, // 4-in-6 unmapped
		{none, "10.1.1.1", []string{"198.51.100.1"}, "10.1.1.1"},
	} {
		if got := tc.c.resolve(a(tc.peer), tc.fwd); got != a(tc.want) {
			t.Errorf("resolve(%s, %q) = %s, want %s", tc.peer, tc.fwd, got, tc.want)
		}
	}
	if k := addrKey(a("2001:db8:1:2:3:4:5:6")); k != addrKey(a("2001:db8:1:2:ffff::1")) || k != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 key %s", k)
	}
	if addrKey(a("198.51.100.1")) == addrKey(a("198.51.100.2")) {
		t.Error("IPv4 addresses share a key")
	}
}

// FuzzResolveClientAddr: any header yields the peer or an untrusted address
// that the header contains; it never panics.
func FuzzResolveClientAddr(f *testing.F) {
	f.Add("10.1.1.1", "192.0.2.9, 198.51.100.1")
	f.Add("10.1.1.1", "[2001:db8::7]:80,,")
	f.Add("203.0.113.1", "1.2.3.4")
	f.Add("10.0.0.1", "fe80::1%eth0")
	c, _ := newClientAddrs("x-forwarded-for", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	f.Fuzz(func(t *testing.T, peer, header string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		got := c.resolve(p, []string{header})
		if got == p.Unmap() {
			return
		}
		if c.trusted(got) || !got.IsValid() || got.Zone() != "" {
			t.Fatalf("resolved to %s", got)
		}
		if !c.trusted(p.Unmap()) {
			t.Fatalf("header believed from untrusted peer %s", p)
		}
		found := false
		for _, part := range strings.Split(header, ",") {
			if x, ok := parseHostAddr(part); ok && x == got {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s is not in the header %q", got, header)
		}
	})
}

// FuzzValidateRequest: validation of arbitrary claim requests never panics,
// and its errors never echo the subject id or the idempotency key.
func FuzzValidateRequest(f *testing.F) {
	f.Add("mmh-2025-12", "patient-0001", "wave1:patient-0001")
	f.Add("", "", "")
	f.Add("BAD", " x\n", strings.Repeat("k", 300))
	f.Fuzz(func(t *testing.T, incident, subject, idem string) {
		err := validateRequest(&impactv1.ClaimNoticeRequest{IncidentId: incident, SubjectId: subject, IdempotencyKey: idem})
		if err == nil {
			return
		}
		var ir *invalidRequestError
		if !errors.As(err, &ir) || len(ir.violations) == 0 {
			t.Fatalf("unexpected error %v", err)
		}
		msg := err.Error()
		for _, v := range []string{subject, idem} {
			if len(v) >= 4 && strings.Contains(msg, v) && !strings.Contains(knownRuleText, v) {
				t.Fatalf("value %q echoed in %q", v, msg)
			}
		}
	})
}

// knownRuleText is every word a violation message may contain.
const knownRuleText = "invalid request: incident_id subject_id idempotency_key must match [a-z0-9-]{1,64} is required " +
	"must be at most 128 256 bytes must be valid UTF-8 must not contain control characters must not have leading or trailing spaces ; "
