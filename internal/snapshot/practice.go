package snapshot

// IsPracticeID reports whether id is a well-formed practice id as rosters
// name practices: 1 to MaxPracticeIDBytes bytes of [A-Za-z0-9._-]. Practice
// tokens carry the same id (package auth checks it with this rule).
func IsPracticeID(id string) bool {
	if len(id) == 0 || len(id) > MaxPracticeIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
