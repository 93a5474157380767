package server

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/impact-health/impact/internal/auth"
)

// TestFromLoopback: the gateway's calls (loopback peers, IPv4, IPv6 and
// IPv4-mapped) are told from everyone else's, whatever the address type.
func TestFromLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}, true},
		{&net.TCPAddr{IP: net.ParseIP("127.8.9.10"), Port: 5}, true},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 5}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 5}, true},
		{&net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 5}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5}, false},
		{&net.TCPAddr{}, false},
		{&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}, true}, // not TCP: parsed from its string
		{&net.UDPAddr{IP: net.ParseIP("203.0.113.1"), Port: 5}, false},
		{&net.UnixAddr{Name: "/run/impact.sock", Net: "unix"}, false},
		{nil, false},
	} {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: tc.addr})
		if got := fromLoopback(ctx); got != tc.want {
			t.Errorf("fromLoopback(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if fromLoopback(context.Background()) {
		t.Error("a call without a peer is from loopback")
	}
}

// recordingAuthn records the header it was given.
type recordingAuthn struct{ got *[]string }

func (a recordingAuthn) Authenticate(_ context.Context, h string) (auth.Principal, error) {
	*a.got = append(*a.got, h)
	return auth.Principal{Subject: "patient-1"}, nil
}

// TestAuthorizeHeader: the Authorization value reaches the authenticator
// when there is exactly one, whatever the case of its key; none or several
// give it the empty header (refused as missing).
func TestAuthorizeHeader(t *testing.T) {
	const method = "/impact.v1.StatusService/GetMyStatus"
	for _, tc := range []struct {
		md   metadata.MD
		want string
	}{
		{metadata.Pairs("authorization", "Bearer a"), "Bearer a"},
		{metadata.MD{"Authorization": []string{"Bearer b"}}, "Bearer b"},
		{metadata.Pairs("authorization", "Bearer a", "authorization", "Bearer c"), ""},
		{metadata.Pairs("x-other", "y"), ""},
		{nil, ""},
	} {
		var got []string
		ctx := context.Background()
		if tc.md != nil {
			ctx = metadata.NewIncomingContext(ctx, tc.md)
		}
		if _, err := authorize(ctx, recordingAuthn{&got}, method); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("metadata %v: authenticator got %q, want %q", tc.md, got, tc.want)
		}
	}
}
