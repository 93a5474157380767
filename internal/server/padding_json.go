package server

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// appendAnswerJSON appends a as restJSON (protojson with the proto names
// and default values) writes it, byte for byte, without reflection: every
// field of the proto names in declaration order, message fields only when
// set, strings escaped as protojson escapes them ('"', '\\' and the control
// characters; invalid UTF-8 is an error), enums by name (an unknown value as
// its number), timestamps in RFC 3339 UTC with 0, 3, 6 or 9 fractional
// digits (an error out of years 1 to 9999), and protojson's separator. The
// REST listener writes answers with it (restMarshaler) and the padder
// measures them with it (answerJSONLen). The tests compare it with
// restJSON.Marshal over every kind of answer, and fail when a field is added
// to the messages it knows.
func appendAnswerJSON(b []byte, a *impactv1.StatusAnswer) ([]byte, error) {
	var w jsonWriter
	w.b = b
	var o jsonObject
	w.open(&o)
	w.str(&o, "incident_id", a.GetIncidentId())
	w.str(&o, "incident_title", a.GetIncidentTitle())
	w.enum(&o, "status", a.GetStatus())
	w.key(&o, "cohorts")
	w.b = append(w.b, '[')
	for i, c := range a.GetCohorts() {
		if i > 0 {
			w.comma()
		}
		var oc jsonObject
		w.open(&oc)
		w.str(&oc, "id", c.GetId())
		w.str(&oc, "title", c.GetTitle())
		w.key(&oc, "data_categories")
		w.b = append(w.b, '[')
		for k, d := range c.GetDataCategories() {
			if k > 0 {
				w.comma()
			}
			w.value(d)
		}
		w.b = append(w.b, ']', '}')
	}
	w.b = append(w.b, ']')
	if n := a.GetNotice(); n != nil {
		w.key(&o, "notice")
		var on jsonObject
		w.open(&on)
		w.str(&on, "subject", n.GetSubject())
		w.str(&on, "body", n.GetBody())
		w.str(&on, "support_contact", n.GetSupportContact())
		w.b = append(w.b, '}')
	}
	w.uint(&o, "version", a.GetVersion())
	w.uint(&o, "notified_version", a.GetNotifiedVersion())
	if t := a.GetNotifiedAt(); t != nil {
		w.key(&o, "notified_at")
		if err := w.timestamp(t); err != nil {
			return b, err
		}
	}
	w.str(&o, "notice_id", a.GetNoticeId())
	w.key(&o, "update_pending")
	w.b = strconv.AppendBool(w.b, a.GetUpdatePending())
	w.enum(&o, "visible_status", a.GetVisibleStatus())
	w.str(&o, "padding", a.GetPadding())
	w.b = append(w.b, '}')
	if w.bad {
		return b, errInvalidUTF8
	}
	return w.b, nil
}

// answerJSONLen is len(restJSON.Marshal(a)): the length appendAnswerJSON
// writes, into a pooled scratch buffer.
func answerJSONLen(a *impactv1.StatusAnswer) (int, error) {
	bp := jsonScratch.Get().(*[]byte)
	b, err := appendAnswerJSON((*bp)[:0], a)
	n := len(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		jsonScratch.Put(bp)
	}
	return n, err
}

var jsonScratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var errInvalidUTF8 = errors.New("status answer: string field contains invalid UTF-8")

// jsonComma is protojson's separator: a comma, and in some binaries a
// space after it (protojson makes its output unstable on purpose, by a hash
// of the binary). Measured once.
var jsonComma = func() string {
	b, err := restJSON.Marshal(&impactv1.Notice{})
	if err != nil {
		panic(err)
	}
	// {"subject":"","body":"","support_contact":""}: two separators.
	if len(b) > len(`{"subject":"","body":"","support_contact":""}`) {
		return ", "
	}
	return ","
}()

// jsonWriter appends JSON as protojson writes it; bad records invalid
// UTF-8 (protojson refuses it).
type jsonWriter struct {
	b   []byte
	bad bool
}

// jsonObject counts one object's members, for the separators.
type jsonObject struct{ members int }

func (w *jsonWriter) open(o *jsonObject) { w.b = append(w.b, '{'); o.members = 0 }

func (w *jsonWriter) comma() { w.b = append(w.b, jsonComma...) }

// key appends a member's separator and key (proto names need no escape).
func (w *jsonWriter) key(o *jsonObject, name string) {
	if o.members > 0 {
		w.comma()
	}
	o.members++
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) str(o *jsonObject, name, s string) {
	w.key(o, name)
	w.value(s)
}

func (w *jsonWriter) enum(o *jsonObject, name string, s impactv1.Status) {
	w.key(o, name)
	if n, ok := impactv1.Status_name[int32(s)]; ok {
		w.b = append(w.b, '"')
		w.b = append(w.b, n...)
		w.b = append(w.b, '"')
	} else {
		w.b = strconv.AppendInt(w.b, int64(s), 10) // an unknown value is written as its number
	}
}

func (w *jsonWriter) uint(o *jsonObject, name string, v uint32) {
	w.key(o, name)
	w.b = strconv.AppendUint(w.b, uint64(v), 10)
}

// value appends s quoted, with '"' and '\\' and the control characters
// escaped (\b \f \n \r \t, the others \u00xx); every other valid character as
// it is.
func (w *jsonWriter) value(s string) {
	w.bad = w.bad || !utf8.ValidString(s)
	w.b = append(w.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c != '"' && c != '\\' {
			continue
		}
		w.b = append(w.b, s[start:i]...)
		switch c {
		case '"', '\\':
			w.b = append(w.b, '\\', c)
		case '\b':
			w.b = append(w.b, '\\', 'b')
		case '\f':
			w.b = append(w.b, '\\', 'f')
		case '\n':
			w.b = append(w.b, '\\', 'n')
		case '\r':
			w.b = append(w.b, '\\', 'r')
		case '\t':
			w.b = append(w.b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			w.b = append(w.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

// timestamp appends t as protojson writes it: "2025-12-03T10:00:00Z" in
// UTC with 0, 3, 6 or 9 fractional digits, or fails out of its range
// (years 1 to 9999), as protojson fails.
func (w *jsonWriter) timestamp(t *timestamppb.Timestamp) error {
	const minSeconds, maxSeconds = -62_135_596_800, 253_402_300_799
	s, ns := t.GetSeconds(), t.GetNanos()
	if s < minSeconds || s > maxSeconds || ns < 0 || ns > 1e9 {
		return errors.New("status answer: timestamp out of range")
	}
	w.b = append(w.b, '"')
	start := len(w.b)
	w.b = time.Unix(s, int64(ns)).UTC().AppendFormat(w.b, "2006-01-02T15:04:05.000000000")
	x := w.b[start:]
	for range 2 {
		if bytes.HasSuffix(x, []byte("000")) {
			x = x[:len(x)-3]
		}
	}
	if bytes.HasSuffix(x, []byte(".000")) {
		x = x[:len(x)-4]
	}
	w.b = append(w.b[:start+len(x)], 'Z', '"')
	return nil
}
