package docs

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated tables of cli.md from the binaries' --help")

// cli.md's flag and command tables are generated from the --help output of
// the binaries built from this tree: `go test ./docs -run TestCLITables
// -update` rewrites them after a flag or command changes.
func TestCLITables(t *testing.T) {
	tables := map[string]string{
		"impactd-flags":   impactdFlagTable(t, helpOutput(t, "impactd", "--help")),
		"impactctl-flags": cobraFlagTable(t, helpOutput(t, "impactctl", "--help"), "Flags:"),
		"impactctl-commands": commandTable(t, helpOutput(t, "impactctl", "--help"), "",
			helpOutput(t, "impactctl", "snapshot", "--help"), "snapshot ",
			helpOutput(t, "impactctl", "notice", "--help"), "notice ",
			helpOutput(t, "impactctl", "subject", "--help"), "subject ",
			helpOutput(t, "impactctl", "dev", "--help"), "dev "),
	}
	doc := readDoc(t, "cli.md")
	got := doc
	for name, table := range tables {
		begin, end := "<!-- generated:"+name+" -->\n", "<!-- end:"+name+" -->"
		i, j := strings.Index(got, begin), strings.Index(got, end)
		if i < 0 || j < i {
			t.Fatalf("cli.md has no %s ... %s", strings.TrimSpace(begin), end)
		}
		got = got[:i+len(begin)] + table + got[j:]
	}
	if got == doc {
		return
	}
	if *update {
		if err := os.WriteFile("cli.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("cli.md's generated tables differ from the binaries' --help: run `go test ./docs -run TestCLITables -update` and review the diff")
}

// helpOutput runs a binary of this tree with args and returns what it
// printed (a flag package's -help exits non-zero, which is not a failure).
func helpOutput(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = cleanEnv()
	out, _ := cmd.CombinedOutput()
	if len(out) == 0 {
		t.Fatalf("%s %v printed nothing", bin, args)
	}
	return string(out)
}

var stdFlag = regexp.MustCompile(`^  -(\S+)(?: (\S+))?$`)

// impactdFlagTable renders Go flag package usage as a Markdown table.
func impactdFlagTable(t *testing.T, help string) string {
	var b strings.Builder
	b.WriteString("| flag | type | what (default) |\n| --- | --- | --- |\n")
	sc := bufio.NewScanner(strings.NewReader(help))
	n := 0
	var name, typ string
	for sc.Scan() {
		l := sc.Text()
		if m := stdFlag.FindStringSubmatch(l); m != nil {
			name, typ = m[1], m[2]
			if typ == "" {
				typ = "bool"
			}
			continue
		}
		if name != "" && strings.HasPrefix(l, "    \t") {
			fmt.Fprintf(&b, "| `--%s` | %s | %s |\n", name, typ, cell(strings.TrimSpace(l)))
			name = ""
			n++
		}
	}
	if n < 10 {
		t.Fatalf("impactd --help: found %d flags in:\n%s", n, help)
	}
	return b.String()
}

var cobraFlag = regexp.MustCompile(`^\s+(?:-\w, )?--(\S+)(?: (\S+))?\s{2,}(.*)$`)

// cobraFlagTable renders the flags of a cobra help section as a table.
func cobraFlagTable(t *testing.T, help, section string) string {
	var b strings.Builder
	b.WriteString("| flag | type | what (default) |\n| --- | --- | --- |\n")
	n := 0
	for _, l := range sectionLines(help, section) {
		m := cobraFlag.FindStringSubmatch(l)
		if m == nil || m[1] == "help" {
			continue
		}
		typ := m[2]
		if typ == "" {
			typ = "bool"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s |\n", m[1], typ, cell(m[3]))
		n++
	}
	if n < 3 {
		t.Fatalf("found %d flags under %q in:\n%s", n, section, help)
	}
	return b.String()
}

var cobraCommand = regexp.MustCompile(`^\s+(\S+)\s{2,}(.*)$`)

// commandTable lists the commands of cobra help outputs, each given with
// the prefix of its parent command; groups and completion/help are left out.
func commandTable(t *testing.T, helpsAndPrefixes ...string) string {
	var b strings.Builder
	b.WriteString("| command | what |\n| --- | --- |\n")
	groups := map[string]bool{"snapshot": true, "notice": true, "subject": true, "dev": true}
	for i := 0; i < len(helpsAndPrefixes); i += 2 {
		help, prefix := helpsAndPrefixes[i], helpsAndPrefixes[i+1]
		for _, l := range sectionLines(help, "Available Commands:") {
			m := cobraCommand.FindStringSubmatch(l)
			if m == nil || m[1] == "help" || m[1] == "completion" || (prefix == "" && groups[m[1]]) {
				continue
			}
			fmt.Fprintf(&b, "| `impactctl %s%s` | %s |\n", prefix, m[1], cell(m[2]))
		}
	}
	if strings.Count(b.String(), "\n") < 10 {
		t.Fatalf("found too few commands:\n%s", b.String())
	}
	return b.String()
}

// sectionLines returns the lines of help under the heading section, up to
// the next blank line.
func sectionLines(help, section string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case strings.TrimSpace(l) == section:
			in = true
		case in && strings.TrimSpace(l) == "":
			return out
		case in:
			out = append(out, l)
		}
	}
	return out
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}
