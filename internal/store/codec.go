package store

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The compact binary encodings shared by the store implementations. A record
// is 3 bytes in the common case: status, cohort bit set (uvarint), practice
// index (uvarint).

// AppendRecord appends r's encoding to b.
func AppendRecord(b []byte, r Record) []byte {
	b = append(b, byte(r.Status))
	b = binary.AppendUvarint(b, r.Cohorts)
	return binary.AppendUvarint(b, uint64(r.Practice))
}

// DecodeRecord decodes a record and returns the bytes that follow it.
func DecodeRecord(b []byte) (Record, []byte, error) {
	if len(b) < 1 {
		return Record{}, nil, fmt.Errorf("record: short")
	}
	r := Record{Status: Status(b[0])}
	if r.Status != Affected && r.Status != UnderReview {
		return Record{}, nil, fmt.Errorf("record: bad status %d", b[0])
	}
	b = b[1:]
	c, n := binary.Uvarint(b)
	if n <= 0 {
		return Record{}, nil, fmt.Errorf("record: bad cohorts")
	}
	b = b[n:]
	p, n := binary.Uvarint(b)
	if n <= 0 || p > 1<<32-1 {
		return Record{}, nil, fmt.Errorf("record: bad practice")
	}
	r.Cohorts, r.Practice = c, uint32(p)
	return r, b[n:], nil
}

// AppendPin appends p's encoding to b. A pin's record may be NotAffected (a
// correction notice), so it carries its own status byte.
func AppendPin(b []byte, p Pin) []byte {
	b = append(b, 1) // encoding version
	b = binary.AppendUvarint(b, p.Version)
	b = append(b, byte(p.Record.Status))
	b = binary.AppendUvarint(b, p.Record.Cohorts)
	b = binary.AppendUvarint(b, uint64(p.Record.Practice))
	b = binary.AppendVarint(b, p.NotifiedAt.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(p.NoticeID)))
	return append(b, p.NoticeID...)
}

// DecodePin decodes a pin.
func DecodePin(b []byte) (Pin, error) {
	var p Pin
	bad := func(what string) (Pin, error) { return Pin{}, fmt.Errorf("pin: bad %s", what) }
	if len(b) < 2 || b[0] != 1 {
		return bad("encoding")
	}
	b = b[1:]
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return bad("version")
	}
	p.Version, b = v, b[n:]
	if len(b) < 1 || b[0] > byte(UnderReview) {
		return bad("status")
	}
	p.Record.Status, b = Status(b[0]), b[1:]
	c, n := binary.Uvarint(b)
	if n <= 0 {
		return bad("cohorts")
	}
	p.Record.Cohorts, b = c, b[n:]
	pr, n := binary.Uvarint(b)
	if n <= 0 || pr > 1<<32-1 {
		return bad("practice")
	}
	p.Record.Practice, b = uint32(pr), b[n:]
	t, n := binary.Varint(b)
	if n <= 0 {
		return bad("time")
	}
	p.NotifiedAt, b = time.Unix(0, t).UTC(), b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) != l {
		return bad("notice id")
	}
	p.NoticeID = string(b[n:])
	return p, nil
}
