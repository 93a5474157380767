package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server/errinfo"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// errPermissionDenied: the token is valid but lacks the method's scope.
var errPermissionDenied = errors.New("permission denied")

// errTooLarge: an upload exceeds the server's size limit.
var errTooLarge = errors.New("too large")

// errInvalidStream: a client stream broke the protocol (a header where a
// chunk belongs); the message says how.
var errInvalidStream = errors.New("invalid stream")

// Fixed messages: patients are told the code and nothing that could tell an
// unknown subject from a not-affected one, or why a token was refused.
const (
	msgUnauthenticated = "unauthenticated"
	msgPermission      = "permission denied"
	msgNotFound        = "not found"
	msgUnavailable     = "service unavailable, retry later"
	msgInternal        = "internal error"
	msgRateLimited     = "rate limit exceeded, retry later"
	msgVersionAhead    = "requested version is not published yet, retry later"
	msgContended       = "claim contended, retry"
	msgCanceled        = "canceled"
)

// errorRule maps the errors that match to a code and an ErrorInfo reason.
type errorRule struct {
	match  func(error) bool
	code   codes.Code
	reason string
	// patient is the fixed message of the patient listener; "" keeps the
	// error's own text, for errors that name only fields and rules.
	patient string
	// fixed: the operator gets the patient message too (never say why a
	// token was refused).
	fixed bool
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func as[T error]() func(error) bool {
	return func(err error) bool { var t T; return errors.As(err, &t) }
}

// errorRules is the one table from domain and store errors to gRPC codes
// and reasons, first match wins (refinements before what they wrap: a stale
// visible version before any other conflict). A new reason is one row here
// and a constant in errinfo.
var errorRules = []errorRule{
	{match: is(auth.ErrUnauthenticated), code: codes.Unauthenticated, reason: errinfo.Unauthenticated, patient: msgUnauthenticated, fixed: true},
	{match: is(errPermissionDenied), code: codes.PermissionDenied, reason: errinfo.PermissionDenied, patient: msgPermission, fixed: true},
	{match: as[*ratelimit.ExceededError](), code: codes.ResourceExhausted, reason: errinfo.RateLimited, patient: msgRateLimited, fixed: true},
	{match: as[*invalidRequestError](), code: codes.InvalidArgument, reason: errinfo.InvalidArgument},
	{match: is(errInvalidStream), code: codes.InvalidArgument, reason: errinfo.InvalidArgument},
	{match: as[*snapshot.ValidationError](), code: codes.InvalidArgument, reason: errinfo.InvalidRoster},
	{match: is(status.ErrInvalidArgument), code: codes.InvalidArgument, reason: errinfo.InvalidArgument},
	{match: is(errTooLarge), code: codes.ResourceExhausted, reason: errinfo.TooLarge},
	{match: is(status.ErrNotFound), code: codes.NotFound, reason: errinfo.NotFound, patient: msgNotFound},
	{match: is(store.ErrNotFound), code: codes.NotFound, reason: errinfo.NotFound, patient: msgNotFound},
	{match: is(status.ErrVersionAhead), code: codes.OutOfRange, reason: errinfo.VersionAhead, patient: msgVersionAhead},
	{match: is(status.ErrContended), code: codes.Aborted, reason: errinfo.ClaimContended, patient: msgContended},
	{match: as[*snapshot.CorrectionsError](), code: codes.FailedPrecondition, reason: errinfo.CorrectionsNotAccepted},
	{match: reviewReason(snapshot.ReasonRequestUnknown), code: codes.FailedPrecondition, reason: errinfo.PublishRequestUnknown},
	{match: reviewReason(snapshot.ReasonRequestLapsed), code: codes.FailedPrecondition, reason: errinfo.PublishRequestLapsed},
	{match: reviewReason(snapshot.ReasonOwnRequest), code: codes.FailedPrecondition, reason: errinfo.OwnPublishRequest},
	{match: reviewReason(snapshot.ReasonAlreadyApproved), code: codes.FailedPrecondition, reason: errinfo.AlreadyApproved},
	{match: reviewReason(snapshot.ReasonRequestPending), code: codes.FailedPrecondition, reason: errinfo.PublishRequestPending},
	{match: is(snapshot.ErrStaleVisible), code: codes.FailedPrecondition, reason: errinfo.StaleVisibleVersion},
	{match: is(snapshot.ErrNotAfterVisible), code: codes.FailedPrecondition, reason: errinfo.NotAfterVisible},
	{match: is(store.ErrLeaseExpired), code: codes.FailedPrecondition, reason: errinfo.StageLeaseExpired},
	{match: is(store.ErrNotStaged), code: codes.FailedPrecondition, reason: errinfo.NotStaged},
	{match: is(store.ErrVerify), code: codes.FailedPrecondition, reason: errinfo.VerifyFailed},
	{match: is(store.ErrPinned), code: codes.FailedPrecondition, reason: errinfo.VersionRetained},
	{match: is(store.ErrConflict), code: codes.FailedPrecondition, reason: errinfo.Conflict},
	{match: is(context.Canceled), code: codes.Canceled, reason: errinfo.Canceled, patient: msgCanceled, fixed: true},
	// Fail closed, never a guessed status.
	{match: is(store.ErrUnavailable), code: codes.Unavailable, reason: errinfo.Unavailable, patient: msgUnavailable},
	{match: is(context.DeadlineExceeded), code: codes.Unavailable, reason: errinfo.Unavailable, patient: msgUnavailable},
}

// reviewReason matches a refused publish request or approval of one reason.
func reviewReason(reason string) func(error) bool {
	return func(err error) bool {
		var re *snapshot.ReviewError
		return errors.As(err, &re) && re.Reason == reason
	}
}

// internalRule is what no rule matches.
var internalRule = errorRule{code: codes.Internal, reason: errinfo.Internal, patient: msgInternal, fixed: true}

// patientReasons is the one reason a patient sees per code, so that the
// reason tells a patient nothing the code does not.
var patientReasons = map[codes.Code]string{
	codes.Unauthenticated:    errinfo.Unauthenticated,
	codes.PermissionDenied:   errinfo.PermissionDenied,
	codes.ResourceExhausted:  errinfo.RateLimited,
	codes.InvalidArgument:    errinfo.InvalidArgument,
	codes.NotFound:           errinfo.NotFound,
	codes.OutOfRange:         errinfo.VersionAhead,
	codes.Aborted:            errinfo.ClaimContended,
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Canceled:           errinfo.Canceled,
	codes.Unavailable:        errinfo.Unavailable,
	codes.Internal:           errinfo.Internal,
}

func ruleFor(err error) errorRule {
	for _, r := range errorRules {
		if r.match(err) {
			return r
		}
	}
	return internalRule
}

// toStatus is the one place that maps domain and store errors to gRPC
// statuses: a code, a message and a google.rpc.ErrorInfo with the reason
// (plus a BadRequest naming broken rules, or a RetryInfo). With verbose
// (the ops listener) the error text is kept for the operator (domain errors
// never carry patient data) and the ErrorInfo carries the versions the
// refusal is about. Patients get fixed messages, one reason per code and no
// metadata.
func toStatus(err error, verbose bool) error {
	if err == nil {
		return nil
	}
	if _, ok := grpcstatus.FromError(err); ok {
		return err
	}
	r := ruleFor(err)
	msg := err.Error()
	if r.patient != "" && (r.fixed || !verbose) {
		msg = r.patient
	}
	info := &errdetails.ErrorInfo{Domain: errinfo.Domain, Reason: patientReasons[r.code]}
	if verbose {
		info.Reason, info.Metadata = r.reason, errorMetadata(err)
	}
	details := []protoadapt.MessageV1{info}
	var (
		verr     *snapshot.ValidationError
		rerr     *invalidRequestError
		exceeded *ratelimit.ExceededError
	)
	switch {
	case errors.As(err, &exceeded):
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(exceeded.RetryAfter)})
	case errors.As(err, &rerr):
		details = append(details, rerr.badRequest())
	case errors.As(err, &verr):
		details = append(details, validationBadRequest(verr))
	}
	st := grpcstatus.New(r.code, msg)
	if d, derr := st.WithDetails(details...); derr == nil {
		return d.Err()
	}
	return st.Err()
}

// errorMetadata is the ErrorInfo metadata of err for an operator: the incident
// and versions a refusal is about. Never patient data.
func errorMetadata(err error) map[string]string {
	var (
		ve   *snapshot.VersionError
		verr *snapshot.ValidationError
		ce   *snapshot.CorrectionsError
		re   *snapshot.ReviewError
	)
	switch {
	case errors.As(err, &ce):
		return map[string]string{errinfo.IncidentID: ce.Incident, errinfo.Version: strconv.FormatUint(ce.Version, 10),
			errinfo.ExpectedVisibleVersion: strconv.FormatUint(ce.ExpectVisible, 10),
			errinfo.Corrections:            strconv.FormatUint(ce.Count, 10), errinfo.Accepted: strconv.FormatUint(ce.Accepted, 10)}
	case errors.As(err, &re):
		return map[string]string{errinfo.IncidentID: re.Incident, errinfo.Version: strconv.FormatUint(re.Version, 10)}
	case errors.As(err, &ve):
		md := map[string]string{errinfo.IncidentID: ve.Incident}
		if ve.Version != 0 {
			md[errinfo.Version] = strconv.FormatUint(ve.Version, 10)
		}
		if errors.Is(ve.Kind, snapshot.ErrStaleVisible) || errors.Is(ve.Kind, snapshot.ErrNotAfterVisible) {
			md[errinfo.VisibleVersion] = strconv.FormatUint(ve.Visible, 10)
		}
		if errors.Is(ve.Kind, snapshot.ErrStaleVisible) {
			md[errinfo.ExpectedVisibleVersion] = strconv.FormatUint(ve.Expected, 10)
		}
		if ve.State != 0 {
			md[errinfo.State] = ve.State.String()
		}
		return md
	case errors.As(err, &verr):
		return map[string]string{errinfo.Input: verr.Input}
	}
	return nil
}

// validationBadRequest names each row, field and rule of a rejected upload.
func validationBadRequest(verr *snapshot.ValidationError) *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	for _, e := range verr.Errors {
		field := e.Field
		if e.Row > 0 {
			field = fmt.Sprintf("row %d: %s", e.Row, e.Field)
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: field, Description: e.Rule})
	}
	return br
}

// badRequest names each broken field rule (never a value).
func (e *invalidRequestError) badRequest() *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	for _, v := range e.violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Rule})
	}
	return br
}
