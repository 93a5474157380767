package chaos

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckLogsFindsPlainTextAndSubjectIds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.log", `{"level":"INFO","msg":"claim","version":3}`+"\n\n")
	plain := write("plain.log", `{"level":"INFO","msg":"up"}`+"\n"+`redis: 2026/12/01 pool.go:770: failed to dial`+"\n")
	named := write("named.log", `{"level":"WARN","msg":"slow claim","subject":"chaos-0003"}`+"\n")
	for _, tc := range []struct {
		path string
		want string
	}{{good, ""}, {plain, "logs"}, {named, "privacy"}} {
		e := &Env{logs: []string{tc.path}}
		var f Figures
		e.checkLogs(&f)
		switch {
		case tc.want == "" && len(f.Violations) > 0:
			t.Errorf("%s: %v", tc.path, f.Violations)
		case tc.want != "" && (len(f.Violations) != 1 || f.Violations[0].Rule != tc.want):
			t.Errorf("%s: %v; want one %s violation", tc.path, f.Violations, tc.want)
		}
	}
}
