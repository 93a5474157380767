package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// checkLogs reads the log of every impactd the scenario ran: each line
// must be a JSON record (a Redis client's own plain-text lines would break
// the log pipeline), and no line may hold a subject id (the harness's ids
// all start with "chaos-"; impactd logs never name a subject).
func (e *Env) checkLogs(f *Figures) {
	e.mu.Lock()
	logs := append([]string(nil), e.logs...)
	e.mu.Unlock()
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Violations = append(f.Violations, Violation{Rule: "logs", Detail: err.Error()})
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		plain, named := 0, 0
		var firstPlain string
		for sc.Scan() {
			line := sc.Bytes()
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if !json.Valid(line) || line[0] != '{' {
				if plain == 0 {
					firstPlain = string(line[:min(len(line), 160)])
				}
				plain++
			}
			if bytes.Contains(line, []byte("chaos-0")) || bytes.Contains(line, []byte("chaos-fill-")) {
				named++
			}
		}
		if plain > 0 {
			f.Violations = append(f.Violations, Violation{Rule: "logs",
				Detail: fmt.Sprintf("%s: %d lines are not JSON records, the first: %q", path, plain, firstPlain)})
		}
		if named > 0 {
			f.Violations = append(f.Violations, Violation{Rule: "privacy",
				Detail: fmt.Sprintf("%s: %d lines name a subject id", path, named)})
		}
	}
}
