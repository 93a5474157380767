package server

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/impact-health/impact/internal/auth"
)

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
