package server

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// Request validation, in the spirit of protovalidate (which is not
// available offline here): every field of every impact.v1 request message
// has a rule in fieldRules, keyed by the field's full name. A field without
// a rule makes the request fail (and TestEveryRequestFieldHasARule fails
// first): a new field must be given a rule, as a new method must be given
// an access policy. Messages of other packages (health, reflection) are not
// checked. Violations name the field and the rule, never the value.

// fieldViolation is one broken rule.
type fieldViolation struct {
	Field string // proto field path, e.g. "header.incident_id"
	Rule  string // e.g. "must match [a-z0-9-]{1,64}"
}

// invalidRequestError lists the broken rules of a request; errors.go maps
// it to INVALID_ARGUMENT with a google.rpc.BadRequest.
type invalidRequestError struct {
	violations []fieldViolation
}

func (e *invalidRequestError) Error() string {
	var b strings.Builder
	b.WriteString("invalid request: ")
	for i, v := range e.violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.Field + " " + v.Rule)
	}
	return b.String()
}

// errNoRule: a request field has no validation rule (a programming error).
type errNoRule struct{ field protoreflect.FullName }

func (e errNoRule) Error() string { return "server: no validation rule for field " + string(e.field) }

// rule checks one field of m; it returns the broken rule or "".
type rule func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string

var (
	anything rule = func(protoreflect.Message, protoreflect.FieldDescriptor) string { return "" }

	incidentID rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		if !snapshot.IsIncidentID(m.Get(fd).String()) {
			return "must match [a-z0-9-]{1,64}"
		}
		return ""
	}

	// optionalIncidentID: empty (every incident) or an incident id.
	optionalIncidentID rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		if m.Get(fd).String() == "" {
			return ""
		}
		return incidentID(m, fd)
	}

	auditPageSize rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		if m.Get(fd).Uint() > store.MaxAuditPage {
			return fmt.Sprintf("must be at most %d", store.MaxAuditPage)
		}
		return ""
	}

	positiveVersion rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		if m.Get(fd).Uint() < 1 {
			return "must be at least 1"
		}
		return ""
	}

	// present: an optional field that must be set (0 is a valid value).
	present rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		if !m.Has(fd) {
			return "is required"
		}
		return ""
	}

	subjectID rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		return textRule(m.Get(fd).String(), status.MaxSubjectIDBytes, true)
	}

	noticeID rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		return textRule(m.Get(fd).String(), 64, true)
	}

	idempotencyKey rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		return textRule(m.Get(fd).String(), status.MaxIdempotencyKeyBytes, false)
	}

	spec rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		switch n := len(m.Get(fd).Bytes()); {
		case n == 0:
			return "is required"
		case n > snapshot.MaxSpecBytes:
			return fmt.Sprintf("must be at most %d bytes", snapshot.MaxSpecBytes)
		}
		return ""
	}

	// definedStatus: one of the statuses, not STATUS_UNSPECIFIED.
	definedStatus rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		v := m.Get(fd).Enum()
		if v == 0 || fd.Enum().Values().ByNumber(v) == nil {
			return "is required (affected, under_review or not_affected)"
		}
		return ""
	}

	// subjectIDs: a practice's batch of ids (practice.IDsProblem: count,
	// and empty, over-long or repeated ids by position, never by value).
	subjectIDs rule = func(m protoreflect.Message, fd protoreflect.FieldDescriptor) string {
		l := m.Get(fd).List()
		ids := make([]string, l.Len())
		for i := range ids {
			ids[i] = l.Get(i).String()
		}
		return practice.IDsProblem(ids)
	}

	// nested: a message field whose own fields are checked when it is set.
	nested rule = anything
)

// textRule: 1..max bytes of UTF-8 without control characters (and, for
// identifiers, without leading or trailing spaces), as the roster requires
// of subject ids.
func textRule(s string, max int, trim bool) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > max:
		return fmt.Sprintf("must be at most %d bytes", max)
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	case trim && (unicode.IsSpace(rune(s[0])) || unicode.IsSpace(rune(s[len(s)-1]))):
		return "must not have leading or trailing spaces"
	}
	return ""
}

// fieldRules has one rule per field of every impact.v1 request message.
var fieldRules = map[protoreflect.FullName]rule{
	// StatusService (patients).
	"impact.v1.GetMyStatusRequest.incident_id":      incidentID,
	"impact.v1.GetMyStatusRequest.at_least_version": anything, // 0: no floor

	// SnapshotService (impact.admin).
	"impact.v1.UploadSnapshotRequest.header":                     nested,
	"impact.v1.UploadSnapshotRequest.roster_chunk":               anything, // bounded by the message size limit
	"impact.v1.UploadHeader.incident_id":                         incidentID,
	"impact.v1.UploadHeader.spec":                                spec,
	"impact.v1.ListSnapshotsRequest.incident_id":                 incidentID,
	"impact.v1.DiffSnapshotsRequest.incident_id":                 incidentID,
	"impact.v1.DiffSnapshotsRequest.version":                     positiveVersion,
	"impact.v1.DiffSnapshotsRequest.against":                     anything, // 0: against an empty roster
	"impact.v1.PublishSnapshotRequest.incident_id":               incidentID,
	"impact.v1.PublishSnapshotRequest.version":                   positiveVersion,
	"impact.v1.PublishSnapshotRequest.expected_visible_version":  present,
	"impact.v1.RollbackSnapshotRequest.incident_id":              incidentID,
	"impact.v1.RollbackSnapshotRequest.to_version":               positiveVersion,
	"impact.v1.RollbackSnapshotRequest.expected_visible_version": present,
	"impact.v1.GcSnapshotsRequest.incident_id":                   incidentID,
	"impact.v1.GcSnapshotsRequest.keep_last":                     anything, // 0: the default
	"impact.v1.PublishSnapshotRequest.accept_corrections":        anything, // 0: none accepted
	"impact.v1.RollbackSnapshotRequest.accept_corrections":       anything, // 0: none accepted
	"impact.v1.ApprovePublishRequest.incident_id":                incidentID,
	"impact.v1.ApprovePublishRequest.version":                    positiveVersion,
	"impact.v1.ListPublishRequestsRequest.incident_id":           incidentID,
	"impact.v1.ListAuditEventsRequest.incident_id":               optionalIncidentID,
	"impact.v1.ListAuditEventsRequest.after_seq":                 anything,
	"impact.v1.ListAuditEventsRequest.page_size":                 auditPageSize, // 0: the default

	// PracticeService (impact.practice) and PracticeStatsService (impact.admin).
	"impact.v1.GetPracticeImpactRequest.incident_id":   incidentID,
	"impact.v1.CheckPatientsRequest.incident_id":       incidentID,
	"impact.v1.CheckPatientsRequest.subject_ids":       subjectIDs,
	"impact.v1.CheckPatientsStreamRequest.incident_id": incidentID,
	"impact.v1.CheckPatientsStreamRequest.subject_ids": subjectIDs,
	"impact.v1.GetPracticeStatsRequest.incident_id":    incidentID,

	// SubjectService (impact.admin).
	"impact.v1.EraseSubjectRequest.subject_id": subjectID,

	// NoticeService (impact.notify).
	"impact.v1.ClaimNoticeRequest.incident_id":      incidentID,
	"impact.v1.ClaimNoticeRequest.subject_id":       subjectID,
	"impact.v1.ClaimNoticeRequest.idempotency_key":  idempotencyKey,
	"impact.v1.ClaimNoticesRequest.incident_id":     incidentID,
	"impact.v1.ClaimNoticesRequest.subject_id":      subjectID,
	"impact.v1.ClaimNoticesRequest.idempotency_key": idempotencyKey,
	"impact.v1.GetNoticeStatsRequest.incident_id":   incidentID,
	"impact.v1.RestoreNoticesRequest.incident_id":   incidentID,
	"impact.v1.RestoreNoticesRequest.subject_id":    subjectID,
	"impact.v1.RestoreNoticesRequest.version":       positiveVersion,
	"impact.v1.RestoreNoticesRequest.notice_id":     noticeID,
	"impact.v1.RestoreNoticesRequest.status":        definedStatus, // and checked against the version's record
	"impact.v1.RestoreNoticesRequest.notified_at":   present,
	"impact.v1.VerifyNoticesRequest.incident_id":    incidentID,
	"impact.v1.VerifyNoticesRequest.subject_id":     subjectID,
	"impact.v1.VerifyNoticesRequest.version":        positiveVersion,
	"impact.v1.VerifyNoticesRequest.notice_id":      noticeID,
}

// requiredOneofs are oneofs that must have a member set.
var requiredOneofs = map[protoreflect.FullName]bool{
	"impact.v1.UploadSnapshotRequest.part": true,
}

// validateRequest checks a request message against fieldRules.
func validateRequest(req any) error {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	m := msg.ProtoReflect()
	if m.Descriptor().ParentFile().Package() != "impact.v1" {
		return nil
	}
	var vs []fieldViolation
	if err := validateMessage(m, "", &vs); err != nil {
		return err
	}
	if len(vs) > 0 {
		return &invalidRequestError{violations: vs}
	}
	return nil
}

func validateMessage(m protoreflect.Message, prefix string, vs *[]fieldViolation) error {
	d := m.Descriptor()
	oneofs := d.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		o := oneofs.Get(i)
		if requiredOneofs[o.FullName()] && m.WhichOneof(o) == nil {
			*vs = append(*vs, fieldViolation{Field: prefix + string(o.Name()), Rule: "is required"})
		}
	}
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		r, ok := fieldRules[fd.FullName()]
		if !ok {
			return errNoRule{field: fd.FullName()}
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && fd.Message().ParentFile().Package() == "impact.v1" {
			if m.Has(fd) {
				if err := validateMessage(m.Get(fd).Message(), prefix+string(fd.Name())+".", vs); err != nil {
					return err
				}
			}
			continue
		}
		if broken := r(m, fd); broken != "" {
			*vs = append(*vs, fieldViolation{Field: prefix + string(fd.Name()), Rule: broken})
		}
	}
	return nil
}
