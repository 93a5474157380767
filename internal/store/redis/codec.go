package redisstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/impact-health/impact/internal/store"
)

func decodeEntry(field, val string) (store.Entry, error) {
	var e store.Entry
	if len(field) != store.KeySize {
		return e, fmt.Errorf("%w: malformed record key", store.ErrVerify)
	}
	copy(e.Key[:], field)
	r, rest, err := store.DecodeRecord([]byte(val))
	if err != nil || len(rest) != 0 {
		return e, fmt.Errorf("%w: malformed record", store.ErrVerify)
	}
	e.Record = r
	return e, nil
}

// infoJSON is the stored form of a version's info ("<v>" field). Incident,
// version, state and publish details are stored apart.
type infoJSON struct {
	Digest    string       `json:"digest,omitempty"`
	Counts    store.Counts `json:"counts"`
	CreatedBy string       `json:"created_by"`
	CreatedAt int64        `json:"created_at"`
	Source    string       `json:"source"`
}

// pubJSON is the stored form of "<v>:pub".
type pubJSON struct {
	By string `json:"by"`
	At int64  `json:"at"`
}

type manifestJSON struct {
	Spec      []byte   `json:"spec"`
	Cohorts   int      `json:"cohorts"`
	Practices []string `json:"practices"`
	// PracticeCounts: see store.Manifest.
	PracticeCounts []store.PracticeCount `json:"practice_counts,omitempty"`
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func parseState(s string) (store.State, error) {
	switch s {
	case "1":
		return store.StateStaging, nil
	case "2":
		return store.StateStaged, nil
	case "3":
		return store.StatePublished, nil
	case "4", stateDeleting:
		return store.StateAborted, nil
	}
	return 0, fmt.Errorf("%w: corrupt version state", store.ErrUnavailable)
}

// decodeInfo builds a VersionInfo from its stored fields.
func decodeInfo(inc string, v uint64, info, state, pub string) (store.VersionInfo, error) {
	out := store.VersionInfo{Incident: inc, Version: v}
	var err error
	if out.State, err = parseState(state); err != nil {
		return out, err
	}
	var ij infoJSON
	if err := json.Unmarshal([]byte(info), &ij); err != nil {
		return out, fmt.Errorf("%w: corrupt version info", store.ErrUnavailable)
	}
	if ij.Digest != "" {
		if out.Digest, err = store.ParseDigest(ij.Digest); err != nil {
			return out, fmt.Errorf("%w: corrupt version digest", store.ErrUnavailable)
		}
	}
	out.Counts, out.CreatedBy, out.CreatedAt, out.Source = ij.Counts, ij.CreatedBy, fromUnixNano(ij.CreatedAt), ij.Source
	if pub != "" {
		var pj pubJSON
		if err := json.Unmarshal([]byte(pub), &pj); err != nil {
			return out, fmt.Errorf("%w: corrupt publish info", store.ErrUnavailable)
		}
		out.PublishedBy, out.PublishedAt = pj.By, fromUnixNano(pj.At)
	}
	return out, nil
}

func parseHead(inc string, vals []any) (store.Head, bool, error) {
	h := store.Head{Incident: inc}
	if len(vals) != 2 || vals[1] == nil {
		return h, false, nil
	}
	var err1, err2 error
	if vals[0] != nil {
		h.Visible, err1 = strconv.ParseUint(vals[0].(string), 10, 64)
	}
	h.Latest, err2 = strconv.ParseUint(vals[1].(string), 10, 64)
	if err1 != nil || err2 != nil {
		return h, false, fmt.Errorf("%w: corrupt incident head", store.ErrUnavailable)
	}
	return h, true, nil
}
