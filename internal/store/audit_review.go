package store

// Audit actions of the publish review (corrections and approvals).
const (
	AuditPublishRequest  = "publish_request"  // a publish waiting for approvals
	AuditPublishApproval = "publish_approval" // an approval of a publish request
	AuditPublishLapse    = "publish_lapse"    // a publish request that lapsed
	AuditPublishRefused  = "publish_refused"  // a publish refused: more corrections than accepted
)
