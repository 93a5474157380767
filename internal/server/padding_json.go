package server

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// answerJSONLen is len(restJSON.Marshal(a)) without marshalling: what the
// REST gateway will write for a, computed from protojson's single-line
// output (every field of the proto names, message fields only when set,
// strings escaped as protojson escapes them, timestamps in RFC 3339 with 0,
// 3, 6 or 9 fractional digits). A JSON marshal of an answer costs as much as
// the gateway's own; this costs a scan of its strings. The tests compare it
// with restJSON.Marshal over every kind of answer, and fail when a field is
// added to the messages it knows.
func answerJSONLen(a *impactv1.StatusAnswer) (int, error) {
	var j jsonLen
	j.str("incident_id", a.GetIncidentId())
	j.str("incident_title", a.GetIncidentTitle())
	j.enum("status", a.GetStatus())
	j.field("cohorts")
	j.n += 2 // []
	for i, c := range a.GetCohorts() {
		if i > 0 {
			j.n += jsonComma
		}
		var o jsonLen
		o.str("id", c.GetId())
		o.str("title", c.GetTitle())
		o.field("data_categories")
		o.n += 2
		for k, d := range c.GetDataCategories() {
			if k > 0 {
				o.n += jsonComma
			}
			o.value(d)
		}
		j.bad = j.bad || o.bad
		j.n += o.close()
	}
	if n := a.GetNotice(); n != nil {
		var o jsonLen
		o.str("subject", n.GetSubject())
		o.str("body", n.GetBody())
		o.str("support_contact", n.GetSupportContact())
		j.field("notice")
		j.n += o.close()
		j.bad = j.bad || o.bad
	}
	j.uint("version", a.GetVersion())
	j.uint("notified_version", a.GetNotifiedVersion())
	if t := a.GetNotifiedAt(); t != nil {
		n, err := timestampJSONLen(t)
		if err != nil {
			return 0, err
		}
		j.field("notified_at")
		j.n += n
	}
	j.str("notice_id", a.GetNoticeId())
	j.field("update_pending")
	if a.GetUpdatePending() {
		j.n += len("true")
	} else {
		j.n += len("false")
	}
	j.enum("visible_status", a.GetVisibleStatus())
	j.str("padding", a.GetPadding())
	if j.bad {
		return 0, errInvalidUTF8
	}
	return j.close(), nil
}

var errInvalidUTF8 = errors.New("status answer: string field contains invalid UTF-8")

// jsonComma is the length of protojson's separator: a comma, and in some
// binaries a space after it (protojson makes its output unstable on purpose,
// by a hash of the binary). Measured once.
var jsonComma = func() int {
	b, err := restJSON.Marshal(&impactv1.Notice{})
	if err != nil {
		panic(err)
	}
	// {"subject":"","body":"","support_contact":""}: two separators.
	return 1 + (len(b)-len(`{"subject":"","body":"","support_contact":""}`))/2
}()

// jsonLen adds up the length of one JSON object's members.
type jsonLen struct {
	n, members int
	bad        bool
}

// field adds a member's separator and key.
func (j *jsonLen) field(name string) {
	if j.members > 0 {
		j.n += jsonComma
	}
	j.members++
	j.n += len(name) + 3 // "name":
}

func (j *jsonLen) str(name, s string) {
	j.field(name)
	j.value(s)
}

// value adds a string value (protojson refuses invalid UTF-8).
func (j *jsonLen) value(s string) {
	j.bad = j.bad || !utf8.ValidString(s)
	j.n += jsonStringLen(s)
}

func (j *jsonLen) enum(name string, s impactv1.Status) {
	j.field(name)
	if n, ok := impactv1.Status_name[int32(s)]; ok {
		j.n += len(n) + 2
	} else {
		j.n += len(strconv.Itoa(int(s))) // an unknown value is written as its number
	}
}

func (j *jsonLen) uint(name string, v uint32) {
	j.field(name)
	j.n += len(strconv.FormatUint(uint64(v), 10))
}

func (j *jsonLen) close() int { return j.n + 2 }

// jsonStringLen is the length of s as protojson writes it: quoted, with '"'
// and '\\' and the control characters escaped (\b \f \n \r \t, the others
// \u00XX); every other valid character as it is.
func jsonStringLen(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		n += int(jsonEscapeExtra[s[i]])
	}
	return n
}

// jsonEscapeExtra is how many bytes protojson's escape of a byte adds.
var jsonEscapeExtra = func() (t [256]uint8) {
	for c := range ' ' {
		t[c] = 5 // \u00XX
	}
	for _, c := range "\"\\\b\f\n\r\t" {
		t[c] = 1
	}
	return t
}()

// timestampJSONLen is the length of a timestamp as protojson writes it:
// "2025-12-03T10:00:00Z" with 0, 3, 6 or 9 fractional digits, or an error
// out of its range (years 1 to 9999), as protojson fails.
func timestampJSONLen(t *timestamppb.Timestamp) (int, error) {
	const minSeconds, maxSeconds = -62_135_596_800, 253_402_300_799
	s, ns := t.GetSeconds(), t.GetNanos()
	if s < minSeconds || s > maxSeconds || ns < 0 || ns > 1e9 {
		return 0, errors.New("status answer: timestamp out of range")
	}
	n := len(`"2006-01-02T15:04:05Z"`)
	switch {
	case ns%1_000_000_000 == 0: // 1e9 is the next second
	case ns%1_000_000 == 0:
		n += 4
	case ns%1_000 == 0:
		n += 7
	default:
		n += 10
	}
	return n, nil
}
