// Package errinfo is the vocabulary of the google.rpc.ErrorInfo detail that
// every error status of impactd carries: its domain, its reasons and the
// metadata keys. The server sets them (internal/server/errors.go); clients
// such as impactctl read them to say what to do next, without parsing the
// message.
//
// A reason is stable once released: clients branch on it. Patients' calls
// only ever see one reason per status code, so the reason tells a patient
// nothing the code does not.
package errinfo

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every Impact error.
const Domain = "impact.health"

// Reasons.
const (
	// StaleVisibleVersion: the visible version is not the expected one (a
	// publish or rollback compare-and-set lost). Metadata: VisibleVersion
	// (the current one), ExpectedVisibleVersion, Version.
	StaleVisibleVersion = "STALE_VISIBLE_VERSION"
	// NotAfterVisible: the version to publish is not newer than the visible
	// one; publishing older content is a rollback (or upload it again).
	// Metadata: Version, VisibleVersion.
	NotAfterVisible = "NOT_AFTER_VISIBLE"
	// NotStaged: the version is not staged or published (still loading,
	// aborted or removed). Metadata: Version, State when known.
	NotStaged = "NOT_STAGED"
	// VerifyFailed: a loaded version did not match its count or digest; it
	// was aborted. Upload again.
	VerifyFailed = "VERIFY_FAILED"
	// StageLeaseExpired: the upload lost its stage lease (impactd could not
	// renew it in time, e.g. the store was unreachable); the version is left
	// to be collected. Upload again.
	StageLeaseExpired = "STAGE_LEASE_EXPIRED"
	// VersionRetained: the version is visible or pinned and is kept.
	VersionRetained = "VERSION_RETAINED"
	// Conflict: a compare-and-set lost for another reason; retry.
	Conflict = "CONFLICT"
	// NotFound: the incident or version is unknown (for a patient: or the
	// subject has no answer; the two are never told apart).
	NotFound = "NOT_FOUND"
	// VersionAhead: at_least_version is not published yet; retry later.
	VersionAhead = "VERSION_AHEAD"
	// ClaimContended: concurrent claims for one subject; retry.
	ClaimContended = "CLAIM_CONTENDED"
	// Unavailable: the store cannot answer now; retry later.
	Unavailable = "UNAVAILABLE"
	// RateLimited: too many requests; a google.rpc.RetryInfo says when to
	// retry.
	RateLimited = "RATE_LIMITED"
	// InvalidArgument: a request field breaks its rule (a
	// google.rpc.BadRequest names the fields and rules).
	InvalidArgument = "INVALID_ARGUMENT"
	// InvalidRoster: the uploaded spec or roster breaks rules (a
	// google.rpc.BadRequest names rows, fields and rules). Metadata: Input.
	InvalidRoster = "INVALID_ROSTER"
	// TooLarge: the upload exceeds the server's size limit.
	TooLarge = "TOO_LARGE"
	// Unauthenticated: no valid token.
	Unauthenticated = "UNAUTHENTICATED"
	// PermissionDenied: the token lacks the method's scope.
	PermissionDenied = "PERMISSION_DENIED"
	// Canceled: the caller canceled the call.
	Canceled = "CANCELED"
	// Internal: anything else.
	Internal = "INTERNAL"

	// CorrectionsNotAccepted: the publish (or rollback, or the approval
	// that publishes) would change the status of more already-notified
	// subjects than accept_corrections; nothing changed. Review the diff and
	// accept the count. Metadata: Corrections (counted when the publish
	// ran), Accepted, Version, ExpectedVisibleVersion.
	CorrectionsNotAccepted = "CORRECTIONS_NOT_ACCEPTED"
	// PublishRequestUnknown: no pending publish request for the version.
	PublishRequestUnknown = "PUBLISH_REQUEST_UNKNOWN"
	// PublishRequestLapsed: the request can no longer be approved (the
	// visible version moved, or it expired); it was removed. Request again.
	PublishRequestLapsed = "PUBLISH_REQUEST_LAPSED"
	// OwnPublishRequest: the requester cannot approve their own request.
	OwnPublishRequest = "OWN_PUBLISH_REQUEST"
	// AlreadyApproved: this admin approved the request already.
	AlreadyApproved = "ALREADY_APPROVED"
	// PublishRequestPending: a live request to publish the version exists.
	PublishRequestPending = "PUBLISH_REQUEST_PENDING"
)

// Metadata keys. Values are decimal version numbers, incident ids, state
// names or input names: never patient data.
const (
	IncidentID             = "incident_id"
	Version                = "version"
	ExpectedVisibleVersion = "expected_visible_version"
	VisibleVersion         = "visible_version"
	State                  = "state"
	Input                  = "input"
	Corrections            = "corrections"
	Accepted               = "accepted"
)

// Of returns the Impact ErrorInfo that err's gRPC status carries, or nil
// (a nil ErrorInfo's getters answer "" and nil).
func Of(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}
