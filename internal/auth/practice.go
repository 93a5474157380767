package auth

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/impact-health/impact/internal/snapshot"
)

// ScopePractice allows the practice-facing API (PracticeService). A token
// with it must carry a `practice_id` claim: the practice id that rosters
// use, 1 to 64 characters of [A-Za-z0-9._-]. The practice is taken from the
// token only.
const ScopePractice = "impact.practice"

// practiceOf returns the practice of a verified token. A `practice_id`
// claim that is present must be a well-formed practice id (a string, not
// empty, not over-long, the roster's characters); a token with the
// practice scope must have one. Anything else is refused like any bad
// token. Only a token with the practice scope gets a practice.
func practiceOf(p Principal, raw json.RawMessage) (string, error) {
	var id string
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &id); err != nil || !snapshot.IsPracticeID(id) {
			return "", fail(reasonPractice)
		}
	}
	if !p.HasScope(ScopePractice) {
		return "", nil
	}
	if id == "" {
		return "", fail(reasonPractice)
	}
	return id, nil
}

// IsPractice reports whether the principal is a practice (a token with the
// practice scope): such a caller is never a patient.
func (p Principal) IsPractice() bool { return p.HasScope(ScopePractice) }

// MintDevPracticeToken mints a dev token (see MintDevToken) for a
// practice: sub is the practice user, practice the `practice_id` claim.
// The impact.practice scope is added if scopes lack it.
func MintDevPracticeToken(dataDir, sub, practice string, scopes []string, ttl time.Duration) (string, error) {
	if !snapshot.IsPracticeID(practice) {
		return "", fmt.Errorf("dev token: practice id must be 1 to %d characters of [A-Za-z0-9._-]", snapshot.MaxPracticeIDBytes)
	}
	has := false
	for _, s := range scopes {
		has = has || s == ScopePractice
	}
	if !has {
		scopes = append(append([]string(nil), scopes...), ScopePractice)
	}
	return mintDev(dataDir, sub, scopes, ttl, map[string]any{"practice_id": practice})
}
