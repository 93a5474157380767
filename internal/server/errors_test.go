package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server/errinfo"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// errorInfo returns the status's ErrorInfo detail, or nil.
func errorInfo(st *grpcstatus.Status) *errdetails.ErrorInfo { return errinfo.Of(st.Err()) }

// TestErrorMapping is the table of the one boundary: every domain and store
// error, its code, its reason and metadata for operators, and what a
// patient is told.
func TestErrorMapping(t *testing.T) {
	stale := &snapshot.VersionError{Kind: snapshot.ErrStaleVisible, Incident: "inc-1", Version: 5, Expected: 3, Visible: 4, Err: store.ErrConflict}
	older := &snapshot.VersionError{Kind: snapshot.ErrNotAfterVisible, Incident: "inc-1", Version: 2, Visible: 4, Err: store.ErrConflict}
	notStaged := &snapshot.VersionError{Kind: store.ErrNotStaged, Incident: "inc-1", Version: 6, State: store.StateAborted}
	noVersion := &snapshot.VersionError{Kind: store.ErrNotFound, Incident: "inc-1", Version: 9, Err: store.ErrNotFound}
	noIncident := &snapshot.VersionError{Kind: store.ErrNotFound, Incident: "inc-2", Err: store.ErrNotFound}
	roster := &snapshot.ValidationError{Input: snapshot.InputRoster, Total: 1, Errors: []snapshot.RowError{{Row: 5, Field: "cohorts", Rule: "unknown cohort"}}}
	request := &invalidRequestError{violations: []fieldViolation{{Field: "incident_id", Rule: "must match [a-z0-9-]{1,64}"}}}
	corrections := &snapshot.CorrectionsError{Incident: "inc-1", Version: 5, ExpectVisible: 4, Count: 312, Accepted: 300}
	type errorCase struct {
		name    string
		err     error
		code    codes.Code
		reason  string            // on the ops listener
		md      map[string]string // on the ops listener
		ops     string            // message on the ops listener
		patient string            // message on the patient listener
	}
	// review is the case of a refused publish request or approval.
	review := func(reason, want string) errorCase {
		e := &snapshot.ReviewError{Reason: reason, Incident: "inc-1", Version: 5, Message: "refused: " + reason}
		return errorCase{"review " + reason, e, codes.FailedPrecondition, want,
			map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "5"}, e.Message, e.Message}
	}

	tests := []errorCase{
		{"unauthenticated", fmt.Errorf("token expired: %w", auth.ErrUnauthenticated), codes.Unauthenticated, errinfo.Unauthenticated, nil, "unauthenticated", "unauthenticated"},
		{"permission", errPermissionDenied, codes.PermissionDenied, errinfo.PermissionDenied, nil, "permission denied", "permission denied"},
		{"rate limited", &ratelimit.ExceededError{RetryAfter: 2 * time.Second}, codes.ResourceExhausted, errinfo.RateLimited, nil, msgRateLimited, msgRateLimited},
		{"invalid request", request, codes.InvalidArgument, errinfo.InvalidArgument, nil, request.Error(), request.Error()},
		{"invalid stream", fmt.Errorf("%w: the first message must be the header", errInvalidStream), codes.InvalidArgument, errinfo.InvalidArgument, nil,
			"invalid stream: the first message must be the header", "invalid stream: the first message must be the header"},
		{"invalid roster", roster, codes.InvalidArgument, errinfo.InvalidRoster, map[string]string{errinfo.Input: "roster"}, roster.Error(), roster.Error()},
		{"invalid argument", fmt.Errorf("%w: subject id too long", status.ErrInvalidArgument), codes.InvalidArgument, errinfo.InvalidArgument, nil,
			"invalid argument: subject id too long", "invalid argument: subject id too long"},
		{"too large", fmt.Errorf("%w: roster larger than 10 bytes", errTooLarge), codes.ResourceExhausted, errinfo.TooLarge, nil,
			"too large: roster larger than 10 bytes", "too large: roster larger than 10 bytes"},
		{"unknown incident (patient)", status.ErrNotFound, codes.NotFound, errinfo.NotFound, nil, "incident not found", msgNotFound},
		{"erased subject", status.ErrErased, codes.NotFound, errinfo.NotFound, nil, "incident not found: subject erased", msgNotFound},
		{"unknown version", noVersion, codes.NotFound, errinfo.NotFound, map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "9"}, "inc-1 v9 not found", msgNotFound},
		{"unknown incident (ops)", noIncident, codes.NotFound, errinfo.NotFound, map[string]string{errinfo.IncidentID: "inc-2"}, "incident inc-2 not found", msgNotFound},
		{"version ahead", status.ErrVersionAhead, codes.OutOfRange, errinfo.VersionAhead, nil, "requested version is not published yet", msgVersionAhead},
		{"claim contended", status.ErrContended, codes.Aborted, errinfo.ClaimContended, nil, "claim contended, retry", msgContended},
		{"stale visible version", stale, codes.FailedPrecondition, errinfo.StaleVisibleVersion,
			map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "5", errinfo.VisibleVersion: "4", errinfo.ExpectedVisibleVersion: "3"},
			"the visible version is now v4, not v3", "the visible version is now v4, not v3"},
		{"stale, wrapped", fmt.Errorf("rollback copy v7 is staged but not published: %w", stale), codes.FailedPrecondition, errinfo.StaleVisibleVersion,
			map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "5", errinfo.VisibleVersion: "4", errinfo.ExpectedVisibleVersion: "3"},
			"rollback copy v7 is staged but not published: the visible version is now v4, not v3",
			"rollback copy v7 is staged but not published: the visible version is now v4, not v3"},
		{"not after visible", older, codes.FailedPrecondition, errinfo.NotAfterVisible,
			map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "2", errinfo.VisibleVersion: "4"},
			"v2 is not after the visible v4", "v2 is not after the visible v4"},
		{"not staged", notStaged, codes.FailedPrecondition, errinfo.NotStaged,
			map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "6", errinfo.State: "aborted"},
			"inc-1 v6 is aborted, not staged", "inc-1 v6 is aborted, not staged"},
		{"stage lease expired", fmt.Errorf("commit inc-1 v3: version 3: %w", store.ErrLeaseExpired), codes.FailedPrecondition, errinfo.StageLeaseExpired, nil,
			"commit inc-1 v3: version 3: stage lease expired: version is not staged", "commit inc-1 v3: version 3: stage lease expired: version is not staged"},
		{"verify failed", fmt.Errorf("commit inc-1 v3: %w", store.ErrVerify), codes.FailedPrecondition, errinfo.VerifyFailed, nil,
			"commit inc-1 v3: verification failed", "commit inc-1 v3: verification failed"},
		{"version retained", fmt.Errorf("version 2 is pinned: %w", store.ErrPinned), codes.FailedPrecondition, errinfo.VersionRetained, nil,
			"version 2 is pinned: version is retained", "version 2 is pinned: version is retained"},
		{"corrections not accepted", fmt.Errorf("rollback copy v7 is staged but not published: %w", corrections), codes.FailedPrecondition, errinfo.CorrectionsNotAccepted,
			map[string]string{errinfo.IncidentID: "inc-1", errinfo.Version: "5", errinfo.ExpectedVisibleVersion: "4", errinfo.Corrections: "312", errinfo.Accepted: "300"},
			"rollback copy v7 is staged but not published: " + corrections.Error(), "rollback copy v7 is staged but not published: " + corrections.Error()},
		review(snapshot.ReasonRequestUnknown, errinfo.PublishRequestUnknown),
		review(snapshot.ReasonRequestLapsed, errinfo.PublishRequestLapsed),
		review(snapshot.ReasonOwnRequest, errinfo.OwnPublishRequest),
		review(snapshot.ReasonAlreadyApproved, errinfo.AlreadyApproved),
		review(snapshot.ReasonRequestPending, errinfo.PublishRequestPending),
		{"other conflict", fmt.Errorf("pin changed: %w", store.ErrConflict), codes.FailedPrecondition, errinfo.Conflict, nil,
			"pin changed: conflict", "pin changed: conflict"},
		{"canceled", context.Canceled, codes.Canceled, errinfo.Canceled, nil, "canceled", "canceled"},
		{"store unavailable", fmt.Errorf("read: %w", store.ErrUnavailable), codes.Unavailable, errinfo.Unavailable, nil, "read: store unavailable", msgUnavailable},
		{"deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), codes.Unavailable, errinfo.Unavailable, nil, "read: context deadline exceeded", msgUnavailable},
		{"anything else", errors.New("boom at 0xc000123"), codes.Internal, errinfo.Internal, nil, msgInternal, msgInternal},
	}
	hit := map[int]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, r := range errorRules {
				if r.match(tt.err) {
					hit[i] = true
					break
				}
			}
			ops := grpcstatus.Convert(toStatus(tt.err, true))
			if ops.Code() != tt.code || ops.Message() != tt.ops {
				t.Errorf("ops: %v %q, want %v %q", ops.Code(), ops.Message(), tt.code, tt.ops)
			}
			if info := errorInfo(ops); info.GetDomain() != errinfo.Domain || info.GetReason() != tt.reason || !maps.Equal(info.GetMetadata(), tt.md) {
				t.Errorf("ops ErrorInfo %v, want reason %s, metadata %v", info, tt.reason, tt.md)
			}
			pat := grpcstatus.Convert(toStatus(tt.err, false))
			if pat.Code() != tt.code || pat.Message() != tt.patient {
				t.Errorf("patient: %v %q, want %v %q", pat.Code(), pat.Message(), tt.code, tt.patient)
			}
			// A patient's reason is the one of the code; no metadata.
			if info := errorInfo(pat); info.GetReason() != patientReasons[tt.code] || info.GetReason() == "" || len(info.GetMetadata()) != 0 {
				t.Errorf("patient ErrorInfo %v, want reason %q and no metadata", info, patientReasons[tt.code])
			}
		})
	}
	for i, r := range errorRules {
		if !hit[i] {
			t.Errorf("rule %d (%s) has no case in this table", i, r.reason)
		}
		if patientReasons[r.code] == "" {
			t.Errorf("rule %d (%s): code %v has no patient reason", i, r.reason, r.code)
		}
	}
}

// TestErrorDetails: the details beside the ErrorInfo.
func TestErrorDetails(t *testing.T) {
	st := grpcstatus.Convert(toStatus(&ratelimit.ExceededError{RetryAfter: 1500 * time.Millisecond}, false))
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry.GetRetryDelay().AsDuration() != 1500*time.Millisecond {
		t.Errorf("rate limited: details %v, want a RetryInfo of 1.5s", st.Details())
	}
	roster := &snapshot.ValidationError{Input: snapshot.InputRoster, Total: 1, Errors: []snapshot.RowError{{Row: 5, Field: "cohorts", Rule: "unknown cohort"}}}
	st = grpcstatus.Convert(toStatus(roster, true))
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if v := br.GetFieldViolations(); len(v) != 1 || v[0].GetField() != "row 5: cohorts" || v[0].GetDescription() != "unknown cohort" {
		t.Errorf("invalid roster: details %v, want a BadRequest naming row 5", st.Details())
	}
	// A status made elsewhere (grpc's own) passes through untouched.
	in := grpcstatus.Error(codes.DataLoss, "x")
	if out := toStatus(in, true); out != in {
		t.Errorf("a status error was rewritten: %v", out)
	}
}
