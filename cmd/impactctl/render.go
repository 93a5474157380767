package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/server/errinfo"
)

// errorLine renders err as the single line impactctl prints on failure:
// "impactctl: CMD: reason (CODE)". gRPC errors carry their canonical code
// name; multi-line messages are folded into one line.
func errorLine(cmd string, err error) string {
	var b strings.Builder
	b.WriteString("impactctl: ")
	if cmd != "" {
		b.WriteString(cmd)
		b.WriteString(": ")
	}
	b.WriteString(oneLine(reason(err)))
	return b.String()
}

func reason(err error) string {
	var inner interface {
		error
		GRPCStatus() *status.Status
	}
	if !errors.As(err, &inner) || inner.GRPCStatus().Code() == codes.OK {
		return err.Error()
	}
	st := inner.GRPCStatus()
	msg := oneLine(st.Message())
	// Keep the context a wrapping error adds before the status ("read the
	// visible version: ...") and after it ("...; 12 claimed notices kept
	// in ..."), without grpc-go's "rpc error: code = ... desc =" rendering.
	prefix, suffix, _ := strings.Cut(err.Error(), inner.Error())
	name := code.Code(st.Code()).String()
	if info := errinfo.Of(inner); info != nil {
		msg = advice(info, msg)
	}
	switch st.Code() {
	case codes.Unavailable:
		// grpc-go's dial failures are long and nested; keep what matters.
		if i := strings.LastIndex(msg, "dial "); i >= 0 && strings.HasPrefix(msg, "connection error") {
			msg = "cannot reach impactd: " + strings.TrimRight(msg[i:], `"`)
		}
		// An ops listener with mutual TLS refuses a missing or foreign
		// client certificate during the handshake; with TLS 1.3 the client
		// often sees only the broken connection, not the alert. A
		// connection that broke after it was established ("error reading
		// from server": impactd stopped mid-call) is no TLS matter.
		for _, sign := range []string{"tls:", "certificate", "broken pipe", "connection reset", "server preface"} {
			if strings.Contains(msg, sign) && !strings.Contains(msg, "error reading from server") {
				msg += "; if impactd uses TLS or mutual TLS, check --ca-file, --cert and --key"
				break
			}
		}
	case codes.Unauthenticated:
		msg += "; check --token or IMPACT_TOKEN; with impactd --dev, mint it with the same --data-dir/IMPACT_DATA_DIR as impactd"
	case codes.PermissionDenied:
		msg += "; the token lacks the scope this command needs"
	case codes.DeadlineExceeded:
		msg += "; raise --timeout"
	}
	if msg == "" {
		return prefix + name + suffix
	}
	return prefix + msg + " (" + name + ")" + suffix
}

// oneLine folds s onto one line: lines are trimmed and joined with "; ".
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return strings.TrimSpace(s)
	}
	var parts []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// violationRow matches the field of a roster violation, "row 12: status".
var violationRow = regexp.MustCompile(`^row (\d+): (.*)$`)

// violations renders the google.rpc.BadRequest details of a rejected
// upload as a table (ROW, FIELD, RULE), or "" if err carries none.
func violations(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return ""
	}
	var b strings.Builder
	tw := newTable(&b)
	n := 0
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			if n == 0 {
				fmt.Fprintln(tw, "ROW\tFIELD\tRULE")
			}
			n++
			row, field := "-", v.GetField()
			if m := violationRow.FindStringSubmatch(field); m != nil {
				row, field = m[1], m[2]
			}
			if field == "" {
				field = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", row, field, oneLine(v.GetDescription()))
		}
	}
	tw.Flush()
	return b.String()
}

// newTable returns a tabwriter for aligned, space-padded columns.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// num formats n with thousands separators: 1234567 -> "1,234,567".
func num[T ~int | ~int64 | ~uint32 | ~uint64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// percent returns part/whole in whole percent, rounded down so that 100%
// means all; 0 when whole is 0.
func percent(part, whole uint32) int {
	if whole == 0 {
		return 0
	}
	return int(uint64(part) * 100 / uint64(whole))
}

// bar draws part/whole as width cells, "███████░░░". A non-zero part never
// shows as empty, and an incomplete whole never as full.
func bar(part, whole uint32, width int) string {
	filled := 0
	if whole > 0 {
		filled = int(uint64(min(part, whole)) * uint64(width) / uint64(whole))
		if part > 0 && filled == 0 {
			filled = 1
		}
		if part < whole && filled == width {
			filled = width - 1
		}
	}
	return strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
}

// shortDigest abbreviates a hex digest to 12 characters.
func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	if d == "" {
		return "-"
	}
	return d
}

// timestamp formats ts in UTC to the second, "-" if unset.
func timestamp(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// stateName is the lower-case name of a snapshot state.
func stateName(s impactv1.SnapshotState) string {
	if s == impactv1.SnapshotState_SNAPSHOT_STATE_UNSPECIFIED {
		return "-"
	}
	return strings.ToLower(s.String())
}

// renderSnapshotList writes ListSnapshots as a table, newest first as the
// server lists them.
func renderSnapshotList(w io.Writer, incident string, resp *impactv1.ListSnapshotsResponse) error {
	if len(resp.GetSnapshots()) == 0 {
		_, err := fmt.Fprintf(w, "%s: no snapshots yet\n", incident)
		return err
	}
	visible := "none"
	if v := resp.GetVisibleVersion(); v > 0 {
		visible = "v" + strconv.FormatUint(uint64(v), 10)
	}
	fmt.Fprintf(w, "%s: visible version %s\n", incident, visible)
	tw := newTable(w)
	fmt.Fprintln(tw, "VERSION\tSTATE\tVISIBLE\tENTRIES\tAFFECTED\tUNDER REVIEW\tDIGEST\tCREATED BY\tCREATED AT\tSOURCE")
	for _, s := range resp.GetSnapshots() {
		mark := ""
		if s.GetVisible() {
			mark = "*"
		}
		fmt.Fprintf(tw, "v%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.GetVersion(), stateName(s.GetState()), mark, num(s.GetEntries()), num(s.GetAffected()),
			num(s.GetUnderReview()), shortDigest(s.GetDigest()), dash(s.GetCreatedBy()),
			timestamp(s.GetCreatedAt()), dash(s.GetSource()))
	}
	return tw.Flush()
}

// renderSnapshotInfo writes one version's summary and per-cohort counts.
func renderSnapshotInfo(w io.Writer, s *impactv1.SnapshotInfo) error {
	fmt.Fprintf(w, "  state %s, digest %s\n", stateName(s.GetState()), dash(s.GetDigest()))
	fmt.Fprintf(w, "  %s entries: %s affected, %s under review\n",
		num(s.GetEntries()), num(s.GetAffected()), num(s.GetUnderReview()))
	if len(s.GetCohorts()) == 0 {
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "  COHORT\tAFFECTED\tUNDER REVIEW")
	for _, c := range s.GetCohorts() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.GetCohortId(), num(c.GetAffected()), num(c.GetUnderReview()))
	}
	return tw.Flush()
}

// statusName renders a status for people: "affected", "not affected".
func statusName(s impactv1.Status) string {
	if s == impactv1.Status_STATUS_UNSPECIFIED {
		return "-"
	}
	return strings.ReplaceAll(strings.ToLower(s.String()), "_", " ")
}

// renderDiff writes DiffSnapshots as readable tables: totals, per cohort,
// and status transitions.
func renderDiff(w io.Writer, d *impactv1.DiffSnapshotsResponse) error {
	spec := "unchanged"
	if d.GetSpecChanged() {
		spec = "changed (cohorts, notices or support contacts)"
	}
	fmt.Fprintf(w, "%s: v%d against v%d, spec %s\n\n", d.GetIncidentId(), d.GetVersion(), d.GetAgainst(), spec)
	// The transitions count every subject whose status differs, added
	// (from not affected) and removed (to not affected) ones included; the
	// rest of the changed subjects kept their status and moved cohorts.
	var moved uint32
	for _, t := range d.GetTransitions() {
		moved += t.GetCount()
	}
	statusChanged := moved - min(moved, d.GetAdded()+d.GetRemoved())
	cohortsOnly := d.GetChanged() - min(d.GetChanged(), statusChanged)
	tw := newTable(w)
	fmt.Fprintln(tw, "SUBJECTS\tCOUNT")
	fmt.Fprintf(tw, "added\t%s\n", num(d.GetAdded()))
	fmt.Fprintf(tw, "removed (now not affected)\t%s\n", num(d.GetRemoved()))
	fmt.Fprintf(tw, "changed\t%s\t%s another status, %s the same status in other cohorts\n", num(d.GetChanged()), num(statusChanged), num(cohortsOnly))
	tw.Flush()
	if len(d.GetCohorts()) > 0 {
		fmt.Fprintln(w)
		tw = newTable(w)
		// A cohort's members join and leave as subjects are added and
		// removed, or as their cohorts change.
		fmt.Fprintf(tw, "COHORT\tJOINED\tLEFT\tMEMBERS AT v%d\n", d.GetVersion())
		for _, c := range d.GetCohorts() {
			fmt.Fprintf(tw, "%s\t+%s\t-%s\t%s\n", c.GetCohortId(), num(c.GetAdded()), num(c.GetRemoved()), num(c.GetMembers()))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if len(d.GetTransitions()) == 0 && cohortsOnly == 0 {
		_, err := fmt.Fprintln(w, "no status changes")
		return err
	}
	tw = newTable(w)
	fmt.Fprintln(tw, "FROM\tTO\tSUBJECTS")
	for _, t := range d.GetTransitions() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", statusName(t.GetFrom()), statusName(t.GetTo()), num(t.GetCount()))
	}
	if cohortsOnly > 0 {
		fmt.Fprintf(tw, "same status\tother cohorts\t%s\n", num(cohortsOnly))
	}
	return tw.Flush()
}

// statsBarWidth is the width of the notice progress bars.
const statsBarWidth = 10

// renderStats writes GetNoticeStats: one bar per cohort, totals, and the
// corrections due.
func renderStats(w io.Writer, s *impactv1.GetNoticeStatsResponse) error {
	fmt.Fprintf(w, "%s at visible version v%d: members (affected or under review) notified at their current status\n\n", s.GetIncidentId(), s.GetVisibleVersion())
	tw := newTable(w)
	line := func(name, title string, notified, members, due uint32) {
		fmt.Fprintf(tw, "%s\t%s %3d%% of %s notified, %s due\t%s\n",
			name, bar(notified, members, statsBarWidth), percent(notified, members), num(members), num(due), title)
	}
	for _, c := range s.GetCohorts() {
		line(c.GetCohortId(), c.GetTitle(), c.GetNotified(), c.GetMembers(), c.GetDue())
	}
	members := s.GetAffected() + s.GetUnderReview()
	line("all", fmt.Sprintf("%s affected, %s under review", num(s.GetAffected()), num(s.GetUnderReview())),
		s.GetNotified(), members, s.GetDue())
	tw.Flush()
	_, err := fmt.Fprintf(w, "\ncorrections due (notified, now not affected): %s\n", num(s.GetCorrectionsDue()))
	return err
}

// renderClaim writes one claim for a person: the decision, then the notice.
func renderClaim(w io.Writer, c *impactv1.Claim) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "action\t%s %s\n", c.GetAction(), actionHint(c.GetAction()))
	fmt.Fprintf(tw, "version\tv%d\n", c.GetVersion())
	fmt.Fprintf(tw, "status\t%s\n", statusName(c.GetStatus()))
	var cohorts []string
	for _, co := range c.GetCohorts() {
		cohorts = append(cohorts, co.GetId())
	}
	fmt.Fprintf(tw, "cohorts\t%s\n", dash(strings.Join(cohorts, ", ")))
	fmt.Fprintf(tw, "notice id\t%s\n", dash(c.GetNoticeId()))
	fmt.Fprintf(tw, "notified at\t%s\n", timestamp(c.GetNotifiedAt()))
	if n := c.GetNotice(); n != nil {
		fmt.Fprintf(tw, "support\t%s\n", dash(n.GetSupportContact()))
		fmt.Fprintf(tw, "subject\t%s\n", n.GetSubject())
	}
	tw.Flush()
	if n := c.GetNotice(); n != nil && n.GetBody() != "" {
		fmt.Fprintf(w, "\n%s", n.GetBody())
		if !strings.HasSuffix(n.GetBody(), "\n") {
			fmt.Fprintln(w)
		}
	}
	return nil
}

func actionHint(a impactv1.ClaimAction) string {
	switch a {
	case impactv1.ClaimAction_SEND:
		return "(send this notice)"
	case impactv1.ClaimAction_ALREADY_SENT:
		return "(already notified at this status: send nothing)"
	case impactv1.ClaimAction_NONE:
		return "(nothing due: send nothing)"
	}
	return ""
}

// progress is a progress bar on stderr, or nothing when not interactive.
type progress struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func (a *app) newProgress(total int64, description string, bytes bool) *progress {
	if !a.interactive() || total <= 0 {
		return &progress{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"))
	}
	return &progress{bar: progressbar.NewOptions64(total, opts...), w: a.stderr}
}

func (p *progress) add(n int) {
	if p.bar != nil {
		p.bar.Add(n)
	}
}

// note removes the bar and prints a line in its place, when interactive.
func (p *progress) note(line string) {
	if p.bar != nil {
		p.done()
		fmt.Fprintln(p.w, line)
	}
}

// done removes the bar (on success and on failure alike).
func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
		p.bar = nil
	}
}

// usageError is a flag combination cobra cannot check; it exits with the
// usage status.
type usageError string

func (e usageError) Error() string { return string(e) }
