package server

import (
	"encoding/json"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEncodeStatusCarriesDetails: the REST error body holds the gRPC
// status's details (an ErrorInfo here) as {"@type", fields}, beside code and
// message, and nothing else.
func TestEncodeStatusCarriesDetails(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "stale expected version").WithDetails(&errdetails.ErrorInfo{
		Reason: "VERSION_CONFLICT", Domain: "impact.health", Metadata: map[string]string{"visible_version": "4"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(encodeStatus(st), &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 3 || body["code"] != float64(codes.FailedPrecondition) || body["message"] != "stale expected version" {
		t.Fatalf("body: %v", body)
	}
	details, _ := body["details"].([]any)
	if len(details) != 1 {
		t.Fatalf("details: %v", body["details"])
	}
	d, _ := details[0].(map[string]any)
	if d["@type"] != "type.googleapis.com/google.rpc.ErrorInfo" || d["reason"] != "VERSION_CONFLICT" ||
		d["metadata"].(map[string]any)["visible_version"] != "4" {
		t.Fatalf("ErrorInfo detail: %v", d)
	}
	var plain map[string]any
	if err := json.Unmarshal(encodeStatus(status.New(codes.NotFound, "not found")), &plain); err != nil ||
		len(plain) != 3 || plain["details"] == nil {
		t.Fatalf("no details: %v (%v)", plain, err)
	}
}
