package chaos

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// NotAffected is the status of a subject absent from a version's roster.
const NotAffected = "NOT_AFFECTED"

// Truth is what each staged version says: version -> subject -> status
// (AFFECTED or UNDER_REVIEW; a subject absent is NOT_AFFECTED). The harness
// builds it from the rosters it uploads.
type Truth map[uint32]map[string]string

// status is the subject's status at version v, and whether v is known.
func (t Truth) status(v uint32, subject string) (string, bool) {
	m, ok := t[v]
	if !ok {
		return "", false
	}
	if s, ok := m[subject]; ok {
		return s, true
	}
	return NotAffected, true
}

// Pin is a subject's pin when a history starts.
type Pin struct {
	Version  uint32
	NoticeID string
}

// Input is a history and what the checker needs to judge it.
type Input struct {
	History []Op
	Truth   Truth
	// Visible is the visible version when the history starts.
	Visible uint32
	// Pins are the subjects' pins when the history starts.
	Pins map[string]Pin
	// VisualizeDir, if set, receives one Porcupine HTML visualization per
	// model that found a violation.
	VisualizeDir string
	// Timeout bounds each Porcupine search (default 30 s); a search that
	// runs out is reported as inconclusive, which fails the check too.
	Timeout time.Duration
}

// Violation is one broken rule with the operations that show it.
type Violation struct {
	Rule   string
	Detail string
	Ops    []Op
	// Visualization is the HTML file Porcupine wrote, if any.
	Visualization string
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", v.Rule, v.Detail)
	for _, op := range v.Ops {
		b.WriteString("\n    ")
		b.WriteString(op.String())
	}
	if v.Visualization != "" {
		fmt.Fprintf(&b, "\n    visualization: %s", v.Visualization)
	}
	return b.String()
}

// String describes an operation on one line.
func (op Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s %9.3fms..%9.3fms c%d %s] %s", op.Replica, ms(op.Call), ms(op.Return), op.Client, op.Outcome, op.Kind)
	switch op.Kind {
	case KindClaim:
		fmt.Fprintf(&b, " %s", op.Subject)
	case KindRead:
		fmt.Fprintf(&b, " %s at_least=%d", op.Subject, op.AtLeast)
	case KindPublish:
		fmt.Fprintf(&b, " v%d expect=%d", op.Publish, op.Expect)
	}
	if op.Outcome != OK {
		fmt.Fprintf(&b, " -> %s", op.Code)
		return b.String()
	}
	switch op.Kind {
	case KindClaim:
		fmt.Fprintf(&b, " -> %s v%d %s notice=%s", op.Action, op.Pinned, op.Status, op.NoticeID)
	case KindRead:
		fmt.Fprintf(&b, " -> v%d %s notified=v%d notice=%s visible_status=%s pending=%t",
			op.Version, op.Status, op.Pinned, op.NoticeID, op.VisibleStatus, op.UpdatePending)
	}
	return b.String()
}

func ms(d time.Duration) float64 {
	if d == math.MaxInt64 {
		return math.Inf(1)
	}
	return float64(d.Microseconds()) / 1000
}

// Report is the checker's verdict.
type Report struct {
	Ops        int
	Claims     int // acknowledged claims
	Reads      int // answered reads
	Publishes  int // acknowledged publishes
	Violations []Violation
}

// OK reports whether the history broke no rule.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Check judges a history: the ledger per subject and the visibility of the
// incident with Porcupine, then the content of every answer against the
// truth, fail-closed errors, and at_least_version sessions.
func Check(in Input) Report {
	if in.Timeout == 0 {
		in.Timeout = 30 * time.Second
	}
	rep := Report{Ops: len(in.History)}
	for _, op := range in.History {
		if op.Outcome != OK {
			continue
		}
		switch op.Kind {
		case KindClaim:
			rep.Claims++
		case KindRead:
			rep.Reads++
		case KindPublish:
			rep.Publishes++
		}
	}
	rep.Violations = append(rep.Violations, checkLedger(in)...)
	rep.Violations = append(rep.Violations, checkVisibility(in)...)
	rep.Violations = append(rep.Violations, checkContent(in)...)
	rep.Violations = append(rep.Violations, checkSessions(in)...)
	return rep
}

// The guarantee the models check (the lease protocol of
// internal/store/replica; see the package doc):
//
//   - a write (a claim, a publish) takes effect at one point in Redis,
//     between its call and its return, in one order;
//   - a read answers a value some write put there: a pin claimed, or a
//     version published, by a call that began before the read returned
//     (or the state the history starts from);
//   - a read that starts after a write's acknowledgement (its return) does
//     not miss it: it answers that value or a later one, on any replica.
//
// Reads are not linearizable while a write is in flight: replica A may
// apply a change (and answer it) before replica B, and before the writer
// is told, so a read on B that starts after A's answer but before the
// acknowledgement may still answer the older value. The models allow
// exactly that and nothing more: each acknowledged write is two
// operations for Porcupine, its effect (anywhere in [call, return], in
// Redis's order) and its acknowledgement (at its return), which raises the
// floor below which no later read may answer. A write whose outcome is
// unknown has an effect that may happen at any point after its call, or
// never, and no acknowledgement.

// event is what Porcupine sees of an operation: the operation, or the
// acknowledgement of an acknowledged write.
type event struct {
	Op
	Ack bool
}

// porcupineOps converts an operation: a read is one event over [call,
// return]; a write is its effect over [call, return] and, when it was
// acknowledged, its acknowledgement at return. A write whose effect is
// unknown may take effect at any time after its call, so it never returns.
func porcupineOps(op Op) []porcupine.Operation {
	ret := int64(op.Return)
	if op.Outcome == Unknown {
		ret = math.MaxInt64
	}
	out := []porcupine.Operation{{ClientId: op.Client, Input: event{Op: op}, Call: int64(op.Call), Output: op, Return: ret}}
	if op.Kind != KindRead && op.Outcome == OK && op.Action != "NONE" {
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: event{Op: op, Ack: true}, Call: ret, Output: op, Return: ret})
	}
	return out
}

// floor is the versions (with their notice ids, for pins) a read may
// still answer: every value the register held from the floor (the newest
// acknowledged write) up to its current value, oldest first, encoded so
// that states compare with ==.
type floor string

func (f floor) add(v uint32, id string) floor {
	return f + floor(strconv.FormatUint(uint64(v), 10)+":"+id+";")
}

func (f floor) has(v uint32, id string) bool {
	return strings.Contains(";"+string(f), ";"+strconv.FormatUint(uint64(v), 10)+":"+id+";")
}

// raise drops the values older than lo (the values are in order).
func (f floor) raise(lo uint32) floor {
	rest := string(f)
	for rest != "" {
		entry, after, _ := strings.Cut(rest, ";")
		num, _, _ := strings.Cut(entry, ":")
		if v, err := strconv.ParseUint(num, 10, 32); err == nil && uint32(v) >= lo {
			return floor(rest)
		}
		rest = after
	}
	return ""
}

// ledgerState is one subject's pin: Version and NoticeID as Redis holds it
// (Unsure: an unacknowledged claim may have moved it to some version >=
// Version that no answer showed yet), Lo the pin version of the newest
// acknowledged claim, and Seen the pins from Lo up to the current one.
type ledgerState struct {
	Version  uint32
	NoticeID string
	Unsure   bool
	Lo       uint32
	Seen     floor
}

func newLedgerState(p Pin) ledgerState {
	return ledgerState{Version: p.Version, NoticeID: p.NoticeID, Lo: p.Version, Seen: floor("").add(p.Version, p.NoticeID)}
}

// ledgerModel: pins only move forward, a repeated claim (same idempotency
// key) returns the same pin, a claim decides on the current pin (it reads
// Redis), and a read answers a pin some claim made, no older than the
// newest claim acknowledged before it started (see the guarantee above).
var ledgerModel = porcupine.NondeterministicModel{
	Step: func(state, input, _ any) []any {
		s, ev := state.(ledgerState), input.(event)
		op := ev.Op
		switch op.Kind {
		case KindClaim:
			if ev.Ack {
				if s.Version < op.Pinned {
					return nil // acknowledged before it took effect
				}
				if op.Pinned > s.Lo {
					s.Lo, s.Seen = op.Pinned, s.Seen.raise(op.Pinned)
				}
				return []any{s}
			}
			if op.Outcome == Unknown {
				if s.Unsure {
					return []any{s}
				}
				u := s
				u.Unsure = true
				return []any{s, u}
			}
			switch op.Action {
			case "NONE":
				if s.Version == 0 || s.Unsure {
					return []any{s}
				}
				return nil
			case "SEND", "ALREADY_SENT":
				if !sees(s, op.Pinned, op.NoticeID, op.Action == "SEND") {
					return nil
				}
				return []any{s.moveTo(op.Pinned, op.NoticeID)}
			}
			return nil
		case KindRead:
			switch {
			case op.Pinned >= s.Lo && s.Seen.has(op.Pinned, op.NoticeID):
				return []any{s}
			case s.Unsure && op.Pinned > s.Version:
				// The answer shows the pin an unacknowledged claim made.
				return []any{s.moveTo(op.Pinned, op.NoticeID)}
			}
			return nil
		}
		return []any{s}
	},
	DescribeOperation: func(input, _ any) string {
		ev := input.(event)
		op := ev.Op
		switch {
		case ev.Ack:
			return fmt.Sprintf("ack: claim v%d", op.Pinned)
		case op.Outcome != OK:
			return fmt.Sprintf("%s -> %s", op.Kind, op.Code)
		case op.Kind == KindClaim:
			return fmt.Sprintf("claim -> %s v%d", op.Action, op.Pinned)
		}
		return fmt.Sprintf("read -> pin v%d", op.Pinned)
	},
	DescribeState: func(state any) string {
		s := state.(ledgerState)
		cur := fmt.Sprintf("pin v%d", s.Version)
		if s.Unsure {
			cur = fmt.Sprintf("pin >= v%d", s.Version)
		}
		return fmt.Sprintf("%s, reads answer >= v%d of %s", cur, s.Lo, s.Seen)
	},
}

// moveTo is s with the pin (v, id) current in Redis.
func (s ledgerState) moveTo(v uint32, id string) ledgerState {
	if v != s.Version || id != s.NoticeID {
		s.Seen = s.Seen.add(v, id)
	}
	s.Version, s.NoticeID, s.Unsure = v, id, false
	return s
}

// sees reports whether a claim's answer naming pin (v, id) is possible in
// state s: the current pin, or a later one when a new pin (a SEND) or an
// unacknowledged claim moved it forward.
func sees(s ledgerState, v uint32, id string, advance bool) bool {
	if v == s.Version && id == s.NoticeID {
		return true
	}
	return (s.Unsure || advance) && v > s.Version
}

// partitionOps keeps the operations a model judges: reads answered, and
// writes that may have taken effect.
func partitionOps(op Op) bool {
	switch op.Kind {
	case KindRead:
		return op.Outcome == OK
	case KindClaim, KindPublish:
		return op.Outcome != Failed
	}
	return false
}

func checkLedger(in Input) []Violation {
	bySubject := map[string][]porcupine.Operation{}
	for _, op := range in.History {
		if (op.Kind == KindClaim || op.Kind == KindRead) && partitionOps(op) {
			bySubject[op.Subject] = append(bySubject[op.Subject], porcupineOps(op)...)
		}
	}
	subjects := make([]string, 0, len(bySubject))
	for s := range bySubject {
		subjects = append(subjects, s)
	}
	sort.Strings(subjects)
	var out []Violation
	for _, subject := range subjects {
		m := ledgerModel
		p := in.Pins[subject]
		m.Init = func() []any { return []any{newLedgerState(p)} }
		if v, bad := run(in, m.ToModel(), bySubject[subject], "ledger-"+subject); bad {
			v.Rule = "ledger"
			v.Detail = subject + ": " + v.Detail
			out = append(out, v)
		}
	}
	return out
}

// visibleState is the incident's visible version in Redis (Cur), the
// version of the newest acknowledged publish (Lo), and the versions that
// were visible from Lo up to Cur (what a read may still answer).
type visibleState struct {
	Cur, Lo uint32
	Seen    floor
}

// visibilityModel: a publish flips the visible version by compare-and-set,
// only forward; a read answers a version some publish made visible, no
// older than the newest publish acknowledged before it started.
var visibilityModel = porcupine.NondeterministicModel{
	Step: func(state, input, _ any) []any {
		s, ev := state.(visibleState), input.(event)
		op := ev.Op
		switch op.Kind {
		case KindPublish:
			if ev.Ack {
				switch {
				case s.Cur < op.Publish:
					return nil // acknowledged before it took effect
				case s.Lo < op.Publish:
					s.Lo, s.Seen = op.Publish, s.Seen.raise(op.Publish)
				}
				return []any{s}
			}
			can := s.Cur == op.Expect && op.Publish > s.Cur
			flipped := visibleState{Cur: op.Publish, Lo: s.Lo, Seen: s.Seen.add(op.Publish, "")}
			switch {
			case op.Outcome == Unknown && can:
				return []any{s, flipped}
			case op.Outcome == Unknown:
				return []any{s}
			case can:
				return []any{flipped}
			}
			return nil
		case KindRead:
			if op.Version >= s.Lo && s.Seen.has(op.Version, "") {
				return []any{s}
			}
			return nil
		}
		return []any{s}
	},
	DescribeOperation: func(input, _ any) string {
		ev := input.(event)
		op := ev.Op
		switch {
		case ev.Ack:
			return fmt.Sprintf("ack: publish v%d", op.Publish)
		case op.Kind == KindPublish:
			return fmt.Sprintf("publish v%d expect v%d -> %s", op.Publish, op.Expect, op.Outcome)
		}
		return fmt.Sprintf("read -> v%d", op.Version)
	},
	DescribeState: func(state any) string {
		s := state.(visibleState)
		return fmt.Sprintf("visible v%d, reads answer >= v%d of %s", s.Cur, s.Lo, s.Seen)
	},
}

func checkVisibility(in Input) []Violation {
	var ops []porcupine.Operation
	for _, op := range in.History {
		if (op.Kind == KindPublish || op.Kind == KindRead) && partitionOps(op) {
			ops = append(ops, porcupineOps(op)...)
		}
	}
	m := visibilityModel
	m.Init = func() []any {
		return []any{visibleState{Cur: in.Visible, Lo: in.Visible, Seen: floor("").add(in.Visible, "")}}
	}
	if v, bad := run(in, m.ToModel(), ops, "visibility"); bad {
		v.Rule = "visibility"
		return []Violation{v}
	}
	return nil
}

// run checks one partition with Porcupine; on a violation it names the
// first operations that no linearization could place, after the last
// ones the longest linearization did place.
func run(in Input, m porcupine.Model, ops []porcupine.Operation, name string) (Violation, bool) {
	if len(ops) == 0 {
		return Violation{}, false
	}
	res, info := porcupine.CheckOperationsVerbose(m, ops, in.Timeout)
	if res == porcupine.Ok {
		return Violation{}, false
	}
	v := Violation{Detail: "no linearization exists"}
	if res == porcupine.Unknown {
		v.Detail = fmt.Sprintf("inconclusive: the search did not finish within %s", in.Timeout)
	}
	placed := map[int]bool{}
	var longest []int
	for _, part := range info.PartialLinearizations() {
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	for _, i := range longest {
		placed[i] = true
	}
	for _, i := range longest[max(0, len(longest)-3):] {
		v.Ops = append(v.Ops, ops[i].Input.(event).Op)
	}
	unplaced := 0
	for i := range ops {
		if !placed[i] && unplaced < 3 {
			v.Ops = append(v.Ops, ops[i].Input.(event).Op)
			unplaced++
		}
	}
	v.Detail += fmt.Sprintf(" (%d of %d operations placed; the last placed, then the first not placed)", len(longest), len(ops))
	if in.VisualizeDir != "" {
		path := filepath.Join(in.VisualizeDir, name+".html")
		if err := os.MkdirAll(in.VisualizeDir, 0o750); err == nil && porcupine.VisualizePath(m, info, path) == nil {
			v.Visualization = path
		}
	}
	return v, true
}

// allowedReadError lists the codes a read may fail with: the service could
// not establish the answer (fail closed) or the caller asked for a version
// not published yet.
func allowedReadError(op Op) bool {
	switch op.Code {
	case "Unavailable", "DeadlineExceeded":
		return true
	case "OutOfRange":
		return op.AtLeast > 0
	}
	return false
}

// checkContent compares every answer with the truth: a read answers the
// status of its pin's version (or of its visible version when never
// notified) and states the visible status beside it; a claim's notice is
// rendered from its version.
func checkContent(in Input) []Violation {
	var out []Violation
	bad := func(rule, format string, op Op, args ...any) {
		out = append(out, Violation{Rule: rule, Detail: fmt.Sprintf(format, args...), Ops: []Op{op}})
	}
	for _, op := range in.History {
		switch {
		case op.Kind == KindRead && op.Outcome != OK:
			if !allowedReadError(op) {
				bad("read-error", "a read failed with %s, not UNAVAILABLE", op, op.Code)
			}
		case op.Kind == KindRead:
			visible, ok := in.Truth.status(op.Version, op.Subject)
			if !ok {
				bad("mix", "answered at v%d, a version the harness never staged", op, op.Version)
				continue
			}
			want, from := visible, op.Version
			if op.Pinned > 0 {
				from = op.Pinned
				if want, ok = in.Truth.status(op.Pinned, op.Subject); !ok {
					bad("mix", "pinned to v%d, a version the harness never staged", op, op.Pinned)
					continue
				}
			}
			switch {
			case op.Status != want && op.Status == NotAffected:
				bad("fail-closed", "answered NOT_AFFECTED; v%d says %s", op, from, want)
			case op.Status != want:
				bad("mix", "answered %s; v%d says %s", op, op.Status, from, want)
			case op.VisibleStatus != visible:
				bad("mix", "visible status %s; v%d says %s", op, op.VisibleStatus, op.Version, visible)
			case op.UpdatePending != (op.Pinned > 0 && want != visible):
				bad("mix", "update_pending %t with pinned %s and visible %s", op, op.UpdatePending, want, visible)
			case (op.Pinned == 0) != (op.NoticeID == ""):
				bad("mix", "notice id and notified version disagree", op)
			}
		case op.Kind == KindClaim && op.Outcome == OK && op.Action != "NONE":
			want, ok := in.Truth.status(op.Pinned, op.Subject)
			switch {
			case !ok:
				bad("mix", "claim pinned to v%d, a version the harness never staged", op, op.Pinned)
			case op.Status != want:
				bad("mix", "claim rendered %s; v%d says %s", op, op.Status, op.Pinned, want)
			case op.NoticeID == "":
				bad("mix", "claim %s without a notice id", op, op.Action)
			}
		}
	}
	return out
}

// checkSessions: a read with at_least_version = v is answered at v or
// later, and a reader that passes at_least_version never sees the version
// go below one it already saw.
func checkSessions(in Input) []Violation {
	var out []Violation
	type seen struct {
		version uint32
		op      Op
	}
	// Each client is one goroutine: its operations run one after another.
	high := map[int]seen{}
	for _, op := range in.History {
		if op.Kind != KindRead || op.Outcome != OK {
			continue
		}
		if op.AtLeast > 0 && op.Version < op.AtLeast {
			out = append(out, Violation{Rule: "monotonic", Detail: fmt.Sprintf("at_least_version %d answered at v%d", op.AtLeast, op.Version), Ops: []Op{op}})
		} else if h, ok := high[op.Client]; ok && op.AtLeast > 0 && h.version > op.Version {
			out = append(out, Violation{Rule: "monotonic", Detail: fmt.Sprintf("reader saw v%d, then v%d", h.version, op.Version), Ops: []Op{h.op, op}})
		}
		if op.Version > high[op.Client].version {
			high[op.Client] = seen{op.Version, op}
		}
	}
	return out
}

// Segment is the part of history h that was called in [from, to): an
// operation still running at to is cut there, a claim or publish as one
// whose outcome is unknown, a read left out. A scenario that loses state
// on purpose (a failover) checks the history before the loss and the one
// after the repair as two segments.
func Segment(h []Op, from, to time.Duration) []Op {
	var out []Op
	for _, op := range h {
		if op.Call < from || op.Call >= to {
			continue
		}
		if op.Return >= to {
			if op.Kind == KindRead {
				continue
			}
			op.Outcome, op.Code = Unknown, "cut"
		}
		out = append(out, op)
	}
	return out
}
