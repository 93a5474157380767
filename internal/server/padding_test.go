package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// versionsByNumber hands the padder versions made in the test (random
// specs, validated), as a Catalog would: store.ErrNotFound for a number it
// does not hold.
type versionsByNumber map[uint64]*snapshot.Version

func (m versionsByNumber) Get(_ context.Context, incident string, v uint64) (*snapshot.Version, error) {
	if ver, ok := m[v]; ok {
		return ver, nil
	}
	return nil, fmt.Errorf("load %s v%d: %w", incident, v, store.ErrNotFound)
}

// answerAt is the answer the status service gives (status.Service.answer):
// read at visible, with the subject's record rec there and its pin, if any.
func answerAt(vs versionsByNumber, incident string, visible uint64, rec store.Record, pin *store.Pin) status.Answer {
	a := status.Answer{
		Incident: incident, IncidentTitle: vs[visible].Spec.Incident.Title,
		Version: visible, VisibleStatus: rec.Status,
	}
	from, r, id := vs[visible].Spec, rec, ""
	if pin != nil {
		from, r, id = vs[pin.Version].Spec, pin.Record, pin.NoticeID
		a.NotifiedVersion, a.NotifiedAt, a.NoticeID = pin.Version, pin.NotifiedAt, pin.NoticeID
		a.UpdatePending = pin.Record.Status != rec.Status
	}
	a.Status = r.Status
	a.Cohorts, a.Notice = status.Render(from, r, a.NotifiedVersion, id)
	return a
}

// sizes pads a on both transports and returns its protobuf and JSON sizes
// and the lengths of the two paddings.
func sizes(t *testing.T, p *padder, a status.Answer) (protoSize, jsonSize, protoPad, jsonPad int) {
	t.Helper()
	ctx := context.Background()
	forGRPC, forREST := answerPB(a), answerPB(a)
	if err := p.pad(ctx, forGRPC, a.NotifiedVersion, false); err != nil {
		t.Fatalf("pad for gRPC: %v\n%v", err, forGRPC)
	}
	if err := p.pad(ctx, forREST, a.NotifiedVersion, true); err != nil {
		t.Fatalf("pad for REST: %v\n%v", err, forREST)
	}
	for _, x := range []*impactv1.StatusAnswer{forGRPC, forREST} {
		if strings.Trim(x.GetPadding(), " ") != "" {
			t.Fatalf("padding is not spaces: %q", x.GetPadding())
		}
	}
	b, err := restJSON.Marshal(forREST)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := answerJSONLen(forREST); err != nil || n != len(b) {
		t.Fatalf("answerJSONLen %d (%v), restJSON writes %d bytes: %s", n, err, len(b), b)
	}
	return proto.Size(forGRPC), len(b), len(forGRPC.GetPadding()), len(forREST.GetPadding())
}

// oneSize collects the sizes of the answers of one incident at one visible
// version and fails on the first that differs.
type oneSize struct {
	t           *testing.T
	proto, json int
	first       string
	// The shortest paddings seen: the bound is tight when an answer needed
	// the least padding there is (lo on gRPC, none on REST).
	minProtoPad, minJSONPad int
}

func (o *oneSize) add(what string, p, j, pp, jp int) {
	o.t.Helper()
	if o.first == "" {
		o.proto, o.json, o.first, o.minProtoPad, o.minJSONPad = p, j, what, pp, jp
		return
	}
	if p != o.proto || j != o.json {
		o.t.Fatalf("%s: %d protobuf bytes, %d JSON bytes; %s: %d, %d", what, p, j, o.first, o.proto, o.json)
	}
	o.minProtoPad, o.minJSONPad = min(o.minProtoPad, pp), min(o.minJSONPad, jp)
}

// testSpec has n cohorts whose texts differ in length and in their JSON
// escaping (quotes, backslashes, tabs, newlines, non-ASCII, U+2028), and,
// when correction, a correction notice longer than every other notice.
func testSpec(t *testing.T, incident string, n int, correction bool) *snapshot.Spec {
	t.Helper()
	s := &snapshot.Spec{
		Incident:          snapshot.Incident{ID: incident, Title: "Breach \"one\" — Tāmaki"},
		UnderReviewNotice: snapshot.Notice{Subject: "Still checking", Body: "We are still checking.\n\n\n"},
		NotAffectedNotice: snapshot.Notice{Subject: "Not affected", Body: "Your information was not affected."},
	}
	for i := range n {
		s.Cohorts = append(s.Cohorts, snapshot.Cohort{
			ID:             fmt.Sprintf("cohort-%d", i),
			Title:          strings.Repeat("Title \\ ", i+1),
			DataCategories: []string{"nhi_number", fmt.Sprintf("cat_%d", i)}[:1+i%2],
			SupportContact: fmt.Sprintf("0800 000 %03d", i),
			Notice: snapshot.Notice{
				Subject: strings.Repeat("\"", i+1),
				Body:    strings.Repeat("line\t\u2028\n", 3*(n-i)) + "é",
			},
		})
	}
	if correction {
		s.CorrectionNotice = &snapshot.Notice{Subject: strings.Repeat("\"", 30), Body: strings.Repeat("We were wrong.\n\u2028\"", 20)}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func publishedSpec(s *snapshot.Spec) *snapshot.Version {
	return &snapshot.Version{Info: store.VersionInfo{State: store.StatePublished}, Spec: s}
}

// TestPaddingEveryCombination: at one visible version, every status with
// every cohort combination, unpinned or pinned (to the visible version or
// an older one with other texts, at every status and cohort combination:
// update pending or not), with every kind of notice id and notification
// time, has one protobuf size and one JSON size. The largest answers need
// the least padding there is: the bound is exact.
func TestPaddingEveryCombination(t *testing.T) {
	const incident = "pad-2025-12"
	vs := versionsByNumber{
		1: publishedSpec(testSpec(t, incident, 3, false)),
		// 2 was deleted by retention; 3 was aborted.
		3: {Info: store.VersionInfo{State: store.StateAborted}},
		4: publishedSpec(testSpec(t, incident, 4, true)),
	}
	p := newPadder(vs, nil)
	widestID := strings.Repeat("\"", maxNoticeIDBytes)
	notices := []struct {
		id string
		at time.Time
	}{
		{"v1-RI63NS37X4OEXZBL", time.Date(2025, 12, 3, 10, 0, 0, 0, time.UTC)},
		{"v4-" + strings.Repeat("\u2028", 20), time.Date(2025, 12, 3, 10, 0, 0, 123_000_000, time.UTC)},
		{widestID, time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC)}, // the widest protobuf
		{widestID, time.Date(2262, 4, 11, 23, 47, 16, 854_775_807, time.UTC)},  // the widest JSON
	}
	var records []store.Record
	for _, st := range []store.Status{store.NotAffected, store.Affected, store.UnderReview} {
		for c := uint64(0); c < 1<<4; c++ {
			records = append(records, store.Record{Status: st, Cohorts: c})
		}
	}
	const visible = 4
	one := &oneSize{t: t}
	n := 0
	for _, rec := range records {
		pg, js, pp, jp := sizes(t, p, answerAt(vs, incident, visible, rec, nil))
		one.add(fmt.Sprintf("unpinned %+v", rec), pg, js, pp, jp)
		n++
		if rec.Cohorts != 0 {
			continue // a pinned answer shows the visible status only
		}
		for _, pv := range []uint64{1, 4} {
			for _, pinned := range records {
				for _, nt := range notices {
					pin := &store.Pin{Version: pv, Record: pinned, NoticeID: nt.id, NotifiedAt: nt.at}
					pg, js, pp, jp := sizes(t, p, answerAt(vs, incident, visible, rec, pin))
					one.add(fmt.Sprintf("visible %+v pin %+v", rec, pin), pg, js, pp, jp)
					n++
				}
			}
		}
	}
	lo := p.targets[versionKey{incident, visible}].lo
	if one.minProtoPad != lo || one.minJSONPad != 0 {
		t.Fatalf("least padding %d on gRPC (want %d), %d on REST (want 0): the bound is loose", one.minProtoPad, lo, one.minJSONPad)
	}
	t.Logf("%d answers: %d protobuf bytes, %d JSON bytes each", n, one.proto, one.json)
}

// TestPaddingRandom: random valid specs over a few versions (some deleted),
// random records, pins, notice ids and times: every answer of a visible
// version has the one size of that version, on both transports.
func TestPaddingRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 2025))
	for round := range 16 {
		const incident = "rnd-2025-12"
		vs := versionsByNumber{}
		last := uint64(1 + r.IntN(5))
		for v := uint64(1); v <= last; v++ {
			if v < last && r.IntN(4) == 0 {
				continue // deleted
			}
			vs[v] = publishedSpec(randomSpec(t, r, incident))
		}
		p := newPadder(vs, nil)
		one := &oneSize{t: t}
		for i := range 150 {
			vis := vs[last].Spec
			rec := randomRecord(r, len(vis.Cohorts))
			var pin *store.Pin
			if r.IntN(3) > 0 {
				pv := last
				for {
					if pv = uint64(1 + r.IntN(int(last))); vs[pv] != nil {
						break
					}
				}
				pin = &store.Pin{
					Version: pv, Record: randomRecord(r, len(vs[pv].Spec.Cohorts)),
					NoticeID: randomNoticeID(r, pv), NotifiedAt: randomTime(r),
				}
			}
			pg, js, pp, jp := sizes(t, p, answerAt(vs, incident, last, rec, pin))
			one.add(fmt.Sprintf("round %d answer %d (visible %+v, pin %+v)", round, i, rec, pin), pg, js, pp, jp)
		}
	}
}

// TestPaddingLateVersions: a pin at a version the bound of the visible
// version did not cover (one above it: a restore to a staged version; one
// below it that was still loading when the bound was made) widens that
// bound for every answer from then on.
func TestPaddingLateVersions(t *testing.T) {
	const incident = "pad-2025-12"
	for _, late := range []uint64{2, 4} {
		vs := versionsByNumber{
			1: publishedSpec(testSpec(t, incident, 1, false)),
			2: {Info: store.VersionInfo{State: store.StateStaging}},
			3: publishedSpec(testSpec(t, incident, 1, false)),
		}
		p := newPadder(vs, nil)
		before, _, _, _ := sizes(t, p, answerAt(vs, incident, 3, store.Record{}, nil))
		vs[late] = publishedSpec(testSpec(t, incident, 6, true))
		vs[late].Info.State = store.StateStaged
		pin := &store.Pin{Version: late, Record: store.Record{Status: store.Affected, Cohorts: 63}, NoticeID: "v2-X", NotifiedAt: time.Now()}
		pg, js, _, _ := sizes(t, p, answerAt(vs, incident, 3, store.Record{}, pin))
		pg2, js2, _, _ := sizes(t, p, answerAt(vs, incident, 3, store.Record{}, nil))
		if pg != pg2 || js != js2 || pg <= before {
			t.Fatalf("after a pin at v%d: %d/%d and unpinned %d/%d (unpinned before: %d)", late, pg, js, pg2, js2, before)
		}
	}
}

// TestPaddingFailsClosed: a version the bound needs that cannot be loaded
// makes the answer unavailable, never unpadded.
func TestPaddingFailsClosed(t *testing.T) {
	p := newPadder(failingVersions{}, nil)
	a := &impactv1.StatusAnswer{IncidentId: "pad-2025-12", Version: 1}
	if err := p.pad(context.Background(), a, 0, false); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("pad with the store down: %v", err)
	}
	if a.GetPadding() != "" || len(p.targets) != 0 {
		t.Fatalf("padded %q; targets %v", a.GetPadding(), p.targets)
	}
}

type failingVersions struct{}

func (failingVersions) Get(context.Context, string, uint64) (*snapshot.Version, error) {
	return nil, errors.New("connection refused")
}

// TestMaxNoticeIDBytes: the bound's longest notice id is the longest the
// validation of a restored notice lets into a pin.
func TestMaxNoticeIDBytes(t *testing.T) {
	req := &impactv1.RestoreNoticesRequest{IncidentId: "pad-2025-12", SubjectId: "s", Version: 1, Status: impactv1.Status_AFFECTED, NotifiedAt: timePB(time.Now())}
	req.NoticeId = "v1-" + strings.Repeat("A", maxNoticeIDBytes-3)
	if err := validateRequest(req); err != nil {
		t.Fatalf("%d bytes: %v", len(req.NoticeId), err)
	}
	req.NoticeId += "A"
	if err := validateRequest(req); err == nil {
		t.Fatalf("%d bytes accepted", len(req.NoticeId))
	}
	req.NoticeId = "v1-\x01"
	if err := validateRequest(req); err == nil {
		t.Fatal("a control character accepted")
	}
}

// TestPaddingCache: a target is computed once per (incident, visible
// version), and an incident keeps the targets of its two newest visible
// versions only.
func TestPaddingCache(t *testing.T) {
	const incident = "pad-2025-12"
	vs := versionsByNumber{}
	p := newPadder(vs, nil)
	for v := uint64(1); v <= 5; v++ {
		vs[v] = publishedSpec(testSpec(t, incident, int(v), false))
		sizes(t, p, answerAt(vs, incident, v, store.Record{}, nil))
		t1 := p.targets[versionKey{incident, v}]
		sizes(t, p, answerAt(vs, incident, v, store.Record{Status: store.Affected, Cohorts: 1}, nil))
		if p.targets[versionKey{incident, v}] != t1 {
			t.Fatalf("v%d: target computed again", v)
		}
	}
	if len(p.targets) != 2 || p.targets[versionKey{incident, 4}] == nil || len(p.parts) != 5 {
		t.Fatalf("targets %v, %d parts", p.targets, len(p.parts))
	}
}

var textRunes = []rune("aZ9 .,'\"\\/<>&éā漢\u2028\u2029😀")

func randomText(r *rand.Rand, max int, body bool) string {
	n := 1 + r.IntN(max)
	if r.IntN(4) > 0 {
		n = 1 + r.IntN(min(max, 80))
	}
	var b strings.Builder
	for b.Len() < n {
		switch c := textRunes[r.IntN(len(textRunes))]; {
		case body && r.IntN(8) == 0:
			b.WriteByte("\n\t"[r.IntN(2)])
		default:
			b.WriteRune(c)
		}
	}
	s := strings.TrimSpace(b.String())
	if s == "" {
		return "x"
	}
	return s
}

func randomSpec(t *testing.T, r *rand.Rand, incident string) *snapshot.Spec {
	t.Helper()
	notice := func() snapshot.Notice {
		return snapshot.Notice{Subject: randomText(r, 200, false), Body: randomText(r, 1500, true)}
	}
	s := &snapshot.Spec{
		Incident:          snapshot.Incident{ID: incident, Title: randomText(r, 300, false)},
		UnderReviewNotice: notice(),
		NotAffectedNotice: notice(),
	}
	n := 1 + r.IntN(6)
	if r.IntN(10) == 0 {
		n = store.MaxCohorts
	}
	for i := range n {
		c := snapshot.Cohort{
			ID: fmt.Sprintf("c%d-%s", i, strings.Repeat("x", r.IntN(50))), Title: randomText(r, 200, false),
			SupportContact: randomText(r, 100, false), Notice: notice(),
		}
		for j := range r.IntN(6) {
			c.DataCategories = append(c.DataCategories, fmt.Sprintf("cat_%d_%s", j, strings.Repeat("z", r.IntN(40))))
		}
		s.Cohorts = append(s.Cohorts, c)
	}
	if r.IntN(2) == 0 {
		c := notice()
		s.CorrectionNotice = &c
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func randomRecord(r *rand.Rand, cohorts int) store.Record {
	rec := store.Record{Status: []store.Status{store.NotAffected, store.Affected, store.UnderReview}[r.IntN(3)]}
	if rec.Status != store.NotAffected {
		rec.Cohorts = r.Uint64() & (1<<uint(cohorts) - 1)
		if rec.Status == store.Affected && rec.Cohorts == 0 {
			rec.Cohorts = 1
		}
	}
	return rec
}

func randomNoticeID(r *rand.Rand, v uint64) string {
	id := fmt.Sprintf("v%d-", v)
	if r.IntN(2) == 0 {
		return id + "RI63NS37X4OEXZBL" // as claims mint them
	}
	for len(id) < maxNoticeIDBytes {
		c := string(textRunes[r.IntN(len(textRunes))])
		if len(id)+len(c) > maxNoticeIDBytes || r.IntN(20) == 0 {
			break
		}
		id += c
	}
	return strings.TrimSpace(id)
}

func randomTime(r *rand.Rand) time.Time {
	switch r.IntN(4) {
	case 0:
		return time.Date(2025, 12, 1+r.IntN(28), 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(86400)) * time.Second)
	case 1:
		return time.UnixMilli(1_760_000_000_000 + r.Int64N(1e11)).UTC()
	default:
		return time.Unix(r.Int64N(253_402_300_799+62_135_596_800)-62_135_596_800, r.Int64N(1e9)).UTC()
	}
}

// TestAnswerJSONLen: the length answerJSONLen computes is the length of what
// restJSON writes, and what the REST marshaler writes is what restJSON writes, for random answers with every kind of character (control
// characters, quotes, backslashes, U+2028, U+FFFD, emoji), unknown status
// numbers, every timestamp precision; and both fail on invalid UTF-8 and
// on timestamps JSON cannot write.
func TestAnswerJSONLen(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	runes := []rune("a \"\\/\b\f\n\r\t\x00\x01\x1f\x7fé\u2028\ufffd😀")
	text := func() string {
		var b strings.Builder
		for range r.IntN(40) {
			b.WriteRune(runes[r.IntN(len(runes))])
		}
		return b.String()
	}
	for i := range 3000 {
		a := &impactv1.StatusAnswer{
			IncidentId: text(), IncidentTitle: text(), Status: impactv1.Status(r.IntN(6)),
			Version: r.Uint32() >> r.IntN(32), NotifiedVersion: r.Uint32() >> r.IntN(32), NoticeId: text(),
			UpdatePending: r.IntN(2) == 0, VisibleStatus: impactv1.Status(r.IntN(6)), Padding: strings.Repeat(" ", r.IntN(5)),
		}
		for range r.IntN(4) {
			c := &impactv1.Cohort{Id: text(), Title: text()}
			for range r.IntN(4) {
				c.DataCategories = append(c.DataCategories, text())
			}
			a.Cohorts = append(a.Cohorts, c)
		}
		if r.IntN(4) > 0 {
			a.Notice = &impactv1.Notice{Subject: text(), Body: text(), SupportContact: text()}
		}
		if r.IntN(4) > 0 {
			ns := []int32{0, 1_000_000 * r.Int32N(1000), 1_000 * r.Int32N(1_000_000), r.Int32N(1e9)}[r.IntN(4)]
			a.NotifiedAt = &timestamppb.Timestamp{Seconds: r.Int64N(253_402_300_799+62_135_596_800) - 62_135_596_800, Nanos: ns}
		}
		switch i % 100 {
		case 1:
			a.Notice = &impactv1.Notice{Body: "bad \xff"}
		case 2:
			a.Cohorts = []*impactv1.Cohort{{DataCategories: []string{"\xc3"}}}
		case 3:
			a.NotifiedAt = &timestamppb.Timestamp{Seconds: 253_402_300_800}
		case 4:
			a.NotifiedAt = &timestamppb.Timestamp{Seconds: -62_135_596_801}
		}
		b, merr := restJSON.Marshal(a)
		n, err := answerJSONLen(a)
		if (merr != nil) != (err != nil) || merr == nil && n != len(b) {
			t.Fatalf("answer %d: answerJSONLen %d (%v); restJSON %d bytes (%v): %s", i, n, err, len(b), merr, b)
		}
		// What the REST listener writes is restJSON's output, byte for
		// byte, or restJSON's own error.
		got, gerr := restMarshaler.Marshal(a)
		if (merr != nil) != (gerr != nil) || !bytes.Equal(got, b) {
			t.Fatalf("answer %d: the REST marshaler wrote (%v)\n%s\nrestJSON (%v)\n%s", i, gerr, got, merr, b)
		}
		if merr == nil {
			if fast, _ := appendAnswerJSON(nil, a); !bytes.Equal(fast, b) {
				t.Fatalf("answer %d: appendAnswerJSON wrote\n%s\nrestJSON\n%s", i, fast, b)
			}
		}
	}
}

// TestAnswerJSONLenKnowsEveryField: answerJSONLen writes out the fields of
// the messages of an answer; a field added to one of them must be added
// there too (and to the bound, in baseSizes or specPart).
func TestAnswerJSONLenKnowsEveryField(t *testing.T) {
	for m, want := range map[proto.Message]string{
		&impactv1.StatusAnswer{}:        "incident_id incident_title status cohorts notice version notified_version notified_at notice_id update_pending visible_status padding",
		&impactv1.Cohort{}:              "id title data_categories",
		&impactv1.Notice{}:              "subject body support_contact",
		&timestamppb.Timestamp{}:        "seconds nanos",
		&impactv1.GetMyStatusResponse{}: "answer",
	} {
		var names []string
		fs := m.ProtoReflect().Descriptor().Fields()
		for i := range fs.Len() {
			names = append(names, string(fs.Get(i).Name()))
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s has fields %q; answerJSONLen knows %q", m.ProtoReflect().Descriptor().FullName(), got, want)
		}
	}
}
