package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// errPermissionDenied: the token is valid but lacks the method's scope.
var errPermissionDenied = errors.New("permission denied")

// Fixed messages: patients are told the code and nothing that could tell an
// unknown subject from a not-affected one, or why a token was refused.
const (
	msgUnauthenticated = "unauthenticated"
	msgPermission      = "permission denied"
	msgNotFound        = "not found"
	msgUnavailable     = "service unavailable, retry later"
	msgInternal        = "internal error"
	msgRateLimited     = "rate limit exceeded, retry later"
)

// toStatus is the one place that maps domain and store errors to gRPC
// status codes. With verbose (the ops listener) the error text is
// kept for the operator; domain and store errors never carry patient data.
// Patients get fixed messages.
func toStatus(err error, verbose bool) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := func(fixed string) string {
		if verbose {
			return err.Error()
		}
		return fixed
	}
	var (
		verr     *snapshot.ValidationError
		rerr     *invalidRequestError
		exceeded *ratelimit.ExceededError
	)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, msgUnauthenticated)
	case errors.Is(err, errPermissionDenied):
		return status.Error(codes.PermissionDenied, msgPermission)
	case errors.As(err, &exceeded):
		return rateLimitedStatus(exceeded)
	case errors.As(err, &rerr):
		return invalidRequestStatus(rerr)
	case errors.As(err, &verr):
		return validationStatus(verr)
	case errors.Is(err, istatus.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, istatus.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, msg(msgNotFound))
	case errors.Is(err, istatus.ErrVersionAhead):
		return status.Error(codes.OutOfRange, msg("requested version is not published yet, retry later"))
	case errors.Is(err, istatus.ErrContended):
		return status.Error(codes.Aborted, msg("claim contended, retry"))
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotStaged),
		errors.Is(err, store.ErrVerify), errors.Is(err, store.ErrPinned):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		// Invariant 5: fail closed, never a guessed status.
		return status.Error(codes.Unavailable, msg(msgUnavailable))
	}
	return status.Error(codes.Internal, msgInternal)
}

// validationStatus turns a rejected upload into INVALID_ARGUMENT with a
// google.rpc.BadRequest naming each row, field and rule.
func validationStatus(verr *snapshot.ValidationError) error {
	st := status.New(codes.InvalidArgument, verr.Error())
	br := &errdetails.BadRequest{}
	for _, e := range verr.Errors {
		field := e.Field
		if e.Row > 0 {
			field = fmt.Sprintf("row %d: %s", e.Row, e.Field)
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: field, Description: e.Rule})
	}
	if d, err := st.WithDetails(br); err == nil {
		return d.Err()
	}
	return st.Err()
}

// rateLimitedStatus is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo that
// says when to retry (the REST gateway turns it into Retry-After).
func rateLimitedStatus(e *ratelimit.ExceededError) error {
	st := status.New(codes.ResourceExhausted, msgRateLimited)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// invalidRequestStatus is INVALID_ARGUMENT naming each broken field rule
// (never a value), with a google.rpc.BadRequest.
func invalidRequestStatus(e *invalidRequestError) error {
	st := status.New(codes.InvalidArgument, e.Error())
	br := &errdetails.BadRequest{}
	for _, v := range e.violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Rule})
	}
	if d, err := st.WithDetails(br); err == nil {
		return d.Err()
	}
	return st.Err()
}
