package main

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/impact-health/impact/internal/server/errinfo"
)

// advice returns what to tell the operator for a refusal that carries an
// ErrorInfo reason: what happened, with the numbers from its metadata, and
// the command that fixes it. msg is the server's message; it is returned
// unchanged for reasons without advice.
func advice(info *errdetails.ErrorInfo, msg string) string {
	md := info.GetMetadata()
	inc, version, visible, expected := md[errinfo.IncidentID], md[errinfo.Version], md[errinfo.VisibleVersion], md[errinfo.ExpectedVisibleVersion]
	switch info.GetReason() {
	case errinfo.StaleVisibleVersion:
		if inc == "" || visible == "" || expected == "" {
			break
		}
		review := ""
		if version != "" {
			review = fmt.Sprintf("review 'impactctl snapshot diff --incident %s --version %s --against %s', then ", inc, version, visible)
		}
		return fmt.Sprintf("the visible version is now v%s, not v%s (you reviewed against v%s): %sre-run with --expect %s",
			visible, expected, expected, review, visible)
	case errinfo.NotAfterVisible:
		if inc == "" || version == "" || visible == "" {
			break
		}
		return fmt.Sprintf("v%s is not after the visible v%s, and visible versions only move forward: to make its content visible again, "+
			"run 'impactctl snapshot rollback --incident %s --to %s --expect %s' (a rollback publishes it as a new version), or upload it again",
			version, visible, inc, version, visible)
	case errinfo.NotStaged:
		if inc == "" {
			break
		}
		hint := "upload it again"
		if md[errinfo.State] == "staging" {
			hint = "its upload has not finished"
		}
		return fmt.Sprintf("%s: %s; see 'impactctl snapshot list --incident %s'", msg, hint, inc)
	case errinfo.NotFound:
		if inc == "" || version == "" {
			break
		}
		return fmt.Sprintf("%s; see 'impactctl snapshot list --incident %s'", msg, inc)
	case errinfo.VerifyFailed:
		return msg + "; the version was aborted: upload the roster again"
	case errinfo.StageLeaseExpired:
		return msg + "; impactd lost the upload's stage lease (the store was unreachable too long): upload the roster again"
	case errinfo.ClaimContended, errinfo.Conflict:
		return msg + "; run the command again"
	}
	return msg
}
