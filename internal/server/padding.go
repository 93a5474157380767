package server

// Padded answers (invariant 12): every patient status answer of one
// incident, read at one visible version, has one encoded size on the wire,
// whatever the status, cohorts, notice and pin, so that a network observer
// cannot tell from the size of an answer who is affected.
//
// How. For each (incident, visible version) the padder computes a bound of
// the size of any answer that version can produce: the visible version's
// title and number; over every version a pin can refer to (the incident's
// versions up to the visible one that still exist), the largest cohort
// list (all of a version's cohorts) and the largest notice (every cohort's,
// the under-review, not-affected and correction notices, each with the
// footer of a notice pinned to that version whose id is maxNoticeIDBytes
// quotes); and the widest pin fields (notified_version the visible
// version, the widest timestamp, update_pending set on gRPC and false on
// REST, the longest status names). Every field of an answer is at most its
// part of that bound, and both encodings are sums of their fields'
// encodings, so no answer exceeds it; the tests show that the largest
// answers reach it exactly. Specs are immutable, so each version's part is
// computed once; a target is computed once per visible version. (A pin
// restored to a staged version above the visible one is folded into the
// bound when an answer first comes from it, as is a version that was still
// loading when the target was made: from then on every answer has the
// wider size.)
//
// Each answer is then measured and padded up to the target with spaces in
// StatusAnswer.padding:
//
//   - gRPC: proto.Size of the answer, padded so that the padding field's
//     tag, length prefix and payload fill the difference. A length prefix is
//     a varint whose width grows with the length, so the target leaves room
//     for a payload of at least 1, 128 or 16384 bytes, whichever makes the
//     payload lengths of the smallest and the largest answer have one prefix
//     width: every difference is then reachable.
//   - REST: the length of the gateway's JSON (restJSON, which writes the
//     padding field even when empty, so each space adds one byte), computed
//     by answerJSONLen rather than by marshalling twice. The JSON and the
//     protobuf sizes of an answer do not differ by a constant (status names,
//     "false" against an absent field, escaped characters, digits against
//     varints), so one padding cannot fix both: a call from this process's
//     REST gateway (it carries the gateway secret, see clientAddrs) is padded
//     for its JSON, any other call for its protobuf encoding.
//
// Compression would undo the padding: status answers are never compressed
// on gRPC (the handler sets the identity compressor), and the REST listener
// compresses nothing.

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// maxNoticeIDBytes is the longest notice id a pin can hold: the ids claims
// mint are shorter, and a restored one is refused beyond 64 bytes (the
// noticeID rule of validate.go, and notice.Restore). Control characters
// are refused too, so its JSON is at most twice as long ('"' is written \").
const maxNoticeIDBytes = 64

// padTag is the size of the padding field's tag.
var padTag = protowire.SizeTag(protowire.Number((&impactv1.StatusAnswer{}).ProtoReflect().Descriptor().Fields().ByName("padding").Number()))

// errPadBound: an answer larger than the bound of its incident, which the
// construction of the bound rules out. The answer is refused rather than
// sent with a size of its own.
var errPadBound = errors.New("status answer larger than its incident's padding bound")

// versionGetter is the part of snapshot.Catalog the padder uses.
type versionGetter interface {
	Get(ctx context.Context, incident string, version uint64) (*snapshot.Version, error)
}

// padder computes and caches the padding targets.
type padder struct {
	versions versionGetter
	log      *slog.Logger // bound violations (a bug), with incident and sizes only

	mu       sync.Mutex
	parts    map[versionKey]versionPart      // immutable per version
	targets  map[versionKey]*padTarget       // by (incident, visible version); at most 2 per incident
	inflight map[versionKey]*padTargetFlight // targets being computed
}

type versionKey struct {
	incident string
	version  uint64
}

// versionPart is what one version can add to an answer pinned to it (or
// read at it, unpinned): the encoded size of the largest cohort list and of
// the largest notice, in protobuf bytes and in JSON bytes (the difference
// the field's value makes to the JSON of an answer). A version no pin can
// refer to (deleted by retention, or aborted) adds nothing.
type versionPart struct {
	cohortsProto, cohortsJSON int
	noticeProto, noticeJSON   int
}

func (p *versionPart) widen(o versionPart) {
	p.cohortsProto = max(p.cohortsProto, o.cohortsProto)
	p.cohortsJSON = max(p.cohortsJSON, o.cohortsJSON)
	p.noticeProto = max(p.noticeProto, o.noticeProto)
	p.noticeJSON = max(p.noticeJSON, o.noticeJSON)
}

// padTarget is the padding of the answers of one incident at one visible
// version.
type padTarget struct {
	visible uint64
	// loading are versions up to the visible one that were still loading
	// when the target was made (nothing could be pinned to them then);
	// extra are versions folded into the bound since, when an answer first
	// came from one: one of loading, or one above the visible version (a
	// pin restored to a version staged but never published). Normally
	// both are empty.
	loading, extra map[uint64]bool
	// newest is the highest version an answer can be pinned to: the
	// visible one, or the highest of extra.
	newest uint64
	title  string // the visible version's incident title
	widest versionPart

	proto, json int // target sizes of the StatusAnswer message
	width, lo   int // the varint width of every gRPC padding length, and its least
	spaces      string
}

type padTargetFlight struct {
	done chan struct{}
	t    *padTarget
	err  error
}

func newPadder(v versionGetter, log *slog.Logger) *padder {
	return &padder{
		versions: v,
		log:      log,
		parts:    make(map[versionKey]versionPart),
		targets:  make(map[versionKey]*padTarget),
		inflight: make(map[versionKey]*padTargetFlight),
	}
}

// pad sets a.Padding so that a has its incident's size: the JSON size when
// json (a REST answer), else the protobuf size. pinned is the version the
// answer's status, cohorts and notice come from (0: the visible one). a
// must not be padded yet.
func (p *padder) pad(ctx context.Context, a *impactv1.StatusAnswer, pinned uint64, json bool) error {
	t, err := p.target(ctx, a.GetIncidentId(), uint64(a.GetVersion()), pinned)
	if err != nil {
		return err
	}
	if json {
		size, err := answerJSONLen(a)
		if err != nil {
			return err
		}
		n := t.json - size
		if n < 0 {
			return p.violation(a, "json", size, t.json)
		}
		a.Padding = t.spaces[:n]
		return nil
	}
	size := proto.Size(a)
	n := t.proto - size - padTag - t.width
	if n < t.lo || protowire.SizeVarint(uint64(n)) != t.width {
		return p.violation(a, "protobuf", size, t.proto)
	}
	a.Padding = t.spaces[:n]
	return nil
}

// violation logs and returns an answer that does not fit its bound.
func (p *padder) violation(a *impactv1.StatusAnswer, encoding string, size, target int) error {
	err := fmt.Errorf("%w: %s v%d: %s %d bytes, target %d", errPadBound, a.GetIncidentId(), a.GetVersion(), encoding, size, target)
	if p.log != nil {
		p.log.Error("status answer not padded", "incident", a.GetIncidentId(), "version", a.GetVersion(),
			"encoding", encoding, "size", size, "target", target)
	}
	return err
}

// target returns the padding of an incident's answers at a visible version
// that covers an answer pinned to version pinned.
func (p *padder) target(ctx context.Context, incident string, visible, pinned uint64) (*padTarget, error) {
	k := versionKey{incident, visible}
	for {
		p.mu.Lock()
		if t := p.targets[k]; t != nil && t.covers(pinned) {
			p.mu.Unlock()
			return t, nil
		}
		if f := p.inflight[k]; f != nil {
			p.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, status.Unavailable(ctx.Err())
			}
			// A computation that failed only because its caller's context
			// ended says nothing about this caller's: try again.
			if f.err != nil && !(isContextErr(f.err) && ctx.Err() == nil) {
				return nil, f.err
			}
			continue // it may not cover pinned: look again
		}
		prev := p.targets[k]
		f := &padTargetFlight{done: make(chan struct{})}
		p.inflight[k] = f
		p.mu.Unlock()

		f.t, f.err = p.compute(ctx, incident, visible, pinned, prev)

		p.mu.Lock()
		delete(p.inflight, k)
		if f.err == nil {
			p.store(k, f.t)
		}
		p.mu.Unlock()
		close(f.done)
		if f.err != nil {
			return nil, f.err
		}
		return f.t, nil
	}
}

func (t *padTarget) covers(pinned uint64) bool {
	return pinned <= t.visible && !t.loading[pinned] || t.extra[pinned]
}

// store keeps t and, of its incident's targets, the two newest visible
// versions only (reads at an older one are a replica's moment during a
// publish). p.mu must be held.
func (p *padder) store(k versionKey, t *padTarget) {
	p.targets[k] = t
	for o := range p.targets {
		if o.incident == k.incident && o.version+1 < k.version {
			delete(p.targets, o)
		}
	}
}

// compute builds the target of (incident, visible), extending prev (the
// same version's target, which did not cover pinned) if set.
func (p *padder) compute(ctx context.Context, incident string, visible, pinned uint64, prev *padTarget) (*padTarget, error) {
	t := &padTarget{visible: visible, newest: visible}
	if prev != nil {
		*t = *prev
		t.extra = make(map[uint64]bool, len(prev.extra)+1)
		for v := range prev.extra {
			t.extra[v] = true
		}
	} else {
		ver, err := p.versions.Get(ctx, incident, visible)
		if err != nil {
			return nil, status.Unavailable(err)
		}
		if ver.Spec == nil {
			return nil, status.Unavailable(fmt.Errorf("padding: %s v%d has no spec", incident, visible))
		}
		t.title = ver.Spec.Incident.Title
		for v := uint64(1); v <= visible; v++ {
			part, loading, err := p.part(ctx, incident, v)
			if err != nil {
				return nil, err
			}
			if loading {
				if t.loading == nil {
					t.loading = map[uint64]bool{}
				}
				t.loading[v] = true
			}
			t.widest.widen(part)
		}
	}
	if pinned != 0 && !t.covers(pinned) {
		part, _, err := p.part(ctx, incident, pinned)
		if err != nil {
			return nil, err
		}
		if t.extra == nil {
			t.extra = map[uint64]bool{}
		}
		t.extra[pinned] = true
		t.newest = max(t.newest, pinned)
		t.widest.widen(part)
	}
	baseProto, baseJSON, minProto, err := baseSizes(incident, t.title, visible, t.newest)
	if err != nil {
		return nil, err
	}
	bp := baseProto + t.widest.cohortsProto + t.widest.noticeProto
	t.json = baseJSON + t.widest.cohortsJSON + t.widest.noticeJSON
	// Every gRPC padding length is in [lo, lo+spread], lengths of one
	// varint width: [1, 127], [128, 16383], [16384, 2097151], ... (a length
	// of 0 would drop the field, tag and all).
	spread := bp - minProto
	for t.width = 1; ; t.width++ {
		t.lo = 1 << (7 * (t.width - 1))
		if t.lo+spread < 1<<(7*t.width) {
			break
		}
	}
	t.proto = bp + padTag + t.width + t.lo
	t.spaces = strings.Repeat(" ", max(t.lo+spread, t.json)) // the longest padding of either kind
	return t, nil
}

// part returns (and caches) a version's part of the bound; loading: the
// version is still loading (its part is not known yet, and not cached).
func (p *padder) part(ctx context.Context, incident string, v uint64) (part versionPart, loading bool, err error) {
	k := versionKey{incident, v}
	p.mu.Lock()
	part, ok := p.parts[k]
	p.mu.Unlock()
	if ok {
		return part, false, nil
	}
	ver, err := p.versions.Get(ctx, incident, v)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted by retention, which keeps every pinned version: no
		// answer comes from it. Numbers are never reused.
	case err != nil:
		return versionPart{}, false, status.Unavailable(err)
	case ver.Spec == nil && ver.Info.State == store.StateAborted:
	case ver.Spec == nil:
		// Nothing can be pinned to it yet, and it may be staged later.
		return versionPart{}, true, nil
	default:
		if part, err = specPart(ver.Spec, v); err != nil {
			return versionPart{}, false, err
		}
	}
	p.mu.Lock()
	p.parts[k] = part
	p.mu.Unlock()
	return part, false, nil
}

// Widest values of the answer fields that do not come from a spec.
var (
	// widestNoticeID is as long as a notice id can be, and its JSON as long
	// as one's can be.
	widestNoticeID = strings.Repeat(`"`, maxNoticeIDBytes)
	// A negative seconds count is a 10-byte varint; JSON cannot write one
	// (years 1 to 9999 only), so its widest is the last nanosecond of 9999.
	widestTimeProto = &timestamppb.Timestamp{Seconds: -1, Nanos: 999_999_999}
	widestTimeJSON  = &timestamppb.Timestamp{Seconds: 253_402_300_799, Nanos: 999_999_999}
)

// widestStatusJSON is the status whose JSON name is the longest.
func widestStatusJSON() impactv1.Status {
	w := statusPBs[0]
	for _, s := range statusPBs {
		if len(s.String()) > len(w.String()) {
			w = s
		}
	}
	return w
}

// baseSizes returns the protobuf and JSON sizes of the widest answer of an
// incident at a visible version without cohorts and notice, pinned to a
// version up to newest, and a lower bound of the protobuf size of any of its
// answers.
func baseSizes(incident, title string, visible, newest uint64) (protoSize, jsonSize, minProto int, err error) {
	exact := func() *impactv1.StatusAnswer {
		return &impactv1.StatusAnswer{IncidentId: incident, IncidentTitle: title, Version: uint32(visible)}
	}
	a := exact()
	a.Status, a.VisibleStatus = statusPBs[0], statusPBs[0] // every status is a 1-byte varint
	a.NotifiedVersion, a.NoticeId = uint32(newest), widestNoticeID
	a.NotifiedAt, a.UpdatePending = widestTimeProto, true // false is not written
	protoSize = proto.Size(a)

	a.Status, a.VisibleStatus = widestStatusJSON(), widestStatusJSON()
	a.NotifiedAt, a.UpdatePending = widestTimeJSON, false // "false" is longer than "true"
	b, err := restJSON.Marshal(a)
	if err != nil {
		return 0, 0, 0, err
	}
	return protoSize, len(b), proto.Size(exact()), nil
}

// specPart measures what version v (its spec) can add to an answer: all its
// cohorts, and the largest of the notices Render can give (each cohort's,
// under review, not affected, a correction), with the widest footer of a
// notice pinned to v.
func specPart(spec *snapshot.Spec, v uint64) (versionPart, error) {
	empty, err := restJSON.Marshal(&impactv1.StatusAnswer{})
	if err != nil {
		return versionPart{}, err
	}
	// measure returns the protobuf size and the JSON growth of a field.
	measure := func(a *impactv1.StatusAnswer) (int, int, error) {
		b, err := restJSON.Marshal(a)
		return proto.Size(a), len(b) - len(empty), err
	}
	var part versionPart
	all := store.Record{Status: store.Affected, Cohorts: math.MaxUint64}
	cohorts, _ := status.Render(spec, all, v, widestNoticeID)
	if part.cohortsProto, part.cohortsJSON, err = measure(&impactv1.StatusAnswer{Cohorts: cohortsPB(cohorts)}); err != nil {
		return versionPart{}, err
	}
	records := []store.Record{{Status: store.UnderReview}, {Status: store.NotAffected}}
	for i := range spec.Cohorts {
		records = append(records, store.Record{Status: store.Affected, Cohorts: 1 << uint(i)})
	}
	for _, r := range records {
		for _, id := range []string{"", widestNoticeID} { // never notified, notified
			_, n := status.Render(spec, r, v, id)
			np, nj, err := measure(&impactv1.StatusAnswer{Notice: noticePB(n)})
			if err != nil {
				return versionPart{}, err
			}
			part.noticeProto, part.noticeJSON = max(part.noticeProto, np), max(part.noticeJSON, nj)
		}
	}
	return part, nil
}

// viaGateway reports whether a call comes from this process's REST gateway
// (it carries the gateway secret): its answer is sent as JSON.
func (c *clientAddrs) viaGateway(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	s := md.Get(mdGatewaySecret)
	return len(s) == 1 && subtle.ConstantTimeCompare([]byte(s[0]), []byte(c.secret)) == 1
}

// noCompression makes the call's answer go out uncompressed: a compressed
// padded answer would have the size of its content again. It is a no-op for
// calls that do not run on a gRPC transport stream.
func noCompression(ctx context.Context) {
	_ = grpc.SetSendCompressor(ctx, encoding.Identity)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
