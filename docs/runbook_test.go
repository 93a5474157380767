//go:build unix

package docs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/testutil/testclient"
	"github.com/impact-health/impact/internal/testutil/testproc"
)

// The addresses the runbook is written for: those of `make run`
// (scripts/run-dev.sh). The test runs the runbook on free ports instead,
// replacing these strings and nothing else.
const (
	runbookAdminAddr = "127.0.0.1:9091"
	runbookHTTPAddr  = "127.0.0.1:8080"
	runbookGRPCAddr  = "127.0.0.1:9090"
)

// step is one command of the runbook with the texts its output must hold.
type step struct {
	line    int    // line of docs/runbook.md where the command starts
	command string // as written, continuation lines included
	expect  []expectation
}

// expectation is one "# expect:" line: a text the output must contain, or,
// written /like this/, a regular expression it must match.
type expectation struct {
	text string
	re   *regexp.Regexp
}

func (e expectation) String() string { return e.text }

func (e expectation) matches(out string) bool {
	if e.re != nil {
		return e.re.MatchString(out)
	}
	return strings.Contains(out, e.text)
}

func parseExpectation(text string) (expectation, error) {
	if len(text) > 2 && strings.HasPrefix(text, "/") && strings.HasSuffix(text, "/") {
		re, err := regexp.Compile(text[1 : len(text)-1])
		if err != nil {
			return expectation{}, err
		}
		return expectation{text: text, re: re}, nil
	}
	return expectation{text: text}, nil
}

var expectLine = regexp.MustCompile(`^#\s*expect:\s*(.+?)\s*$`)

// parseRunbook returns the steps of the shell block between the runbook
// markers of doc: every command (a line, with its backslash-continued
// lines) and the "# expect: TEXT" lines that follow it. Other comments and
// blank lines are skipped.
func parseRunbook(doc string) ([]step, error) {
	const begin, end = "<!-- runbook:begin -->", "<!-- runbook:end -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %s ... %s block", begin, end)
	}
	offset := strings.Count(doc[:i], "\n") + 1
	lines := strings.Split(doc[i:j], "\n")
	var steps []step
	inFence := false
	for n := 0; n < len(lines); n++ {
		l := strings.TrimSpace(lines[n])
		switch {
		case strings.HasPrefix(l, "```"):
			inFence = !inFence
		case !inFence || l == "":
		case expectLine.MatchString(l):
			if len(steps) == 0 {
				return nil, fmt.Errorf("line %d: expect before any command", offset+n)
			}
			e, err := parseExpectation(expectLine.FindStringSubmatch(l)[1])
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", offset+n, err)
			}
			last := &steps[len(steps)-1]
			last.expect = append(last.expect, e)
		case strings.HasPrefix(l, "#"):
		default:
			s := step{line: offset + n, command: lines[n]}
			for strings.HasSuffix(strings.TrimRight(lines[n], " "), `\`) && n+1 < len(lines) {
				n++
				s.command += "\n" + lines[n]
			}
			steps = append(steps, s)
		}
	}
	if inFence {
		return nil, fmt.Errorf("unclosed code fence in the runbook block")
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("the runbook block has no commands")
	}
	return steps, nil
}

// TestRunbook runs docs/runbook.md as a newcomer would: scripts/run-dev.sh
// (what `make run` runs) starts impactd --dev in a fresh directory and
// publishes the demo v1, then the runbook's commands run in order in one
// bash session from that directory, stopping at the first failure, and
// each command's output must hold the texts of its "# expect:" lines.
func TestRunbook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs the runbook")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
	root := repoRoot(t)
	steps, err := parseRunbook(readDoc(t, "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	runDev := filepath.Join(root, "scripts", "run-dev.sh")
	script, err := os.ReadFile(runDev)
	if err != nil {
		t.Fatal(err)
	}
	for env, addr := range map[string]string{
		"IMPACT_ADMIN_GRPC_ADDR": runbookAdminAddr, "IMPACT_HTTP_ADDR": runbookHTTPAddr, "IMPACT_GRPC_ADDR": runbookGRPCAddr,
	} {
		if !strings.Contains(string(script), env+":-"+addr) {
			t.Fatalf("scripts/run-dev.sh no longer defaults %s to %s: update docs/runbook.md", env, addr)
		}
	}

	// A fresh clone's state after `make build`: bin/ holds the binaries and
	// there is no .impact-dev yet.
	dir := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 4)
	env := cleanEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	server := exec.Command("bash", runDev, "bin", filepath.Join(dir, ".impact-dev"))
	server.Dir = dir
	server.Env = append(env, "IMPACT_HTTP_ADDR="+ports[0], "IMPACT_GRPC_ADDR="+ports[1],
		"IMPACT_ADMIN_GRPC_ADDR="+ports[2], "IMPACT_ADMIN_HTTP_ADDR="+ports[3])
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var serverOut testclient.LogBuffer
	server.Stderr = &serverOut
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = server.Wait(); close(exited) }()
	t.Cleanup(func() { stopGroup(server.Process.Pid, exited) })

	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			_, _ = serverOut.Write([]byte(sc.Text() + "\n"))
			if !signalled && strings.HasPrefix(sc.Text(), "Impact is running") {
				signalled = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("scripts/run-dev.sh exited before the server was ready:\n%s\n%s", serverOut.String(), impactdLog(dir))
	case <-ctx.Done():
		t.Fatalf("scripts/run-dev.sh not ready in time:\n%s\n%s", serverOut.String(), impactdLog(dir))
	}

	// The runbook, as one bash session: a marker line before each command
	// tells which command printed what.
	var b strings.Builder
	b.WriteString("set -euo pipefail\nexec 2>&1\n")
	r := strings.NewReplacer(runbookAdminAddr, ports[2], runbookHTTPAddr, ports[0], runbookGRPCAddr, ports[1])
	for i, s := range steps {
		fmt.Fprintf(&b, "printf '\\n@@runbook-step %d\\n'\n%s\n", i, r.Replace(s.command))
	}
	sh := exec.CommandContext(ctx, "bash", "-c", b.String())
	sh.Dir = dir
	sh.Env = env
	output, runErr := sh.CombinedOutput()
	outputs, last := splitSteps(string(output), len(steps))
	if runErr != nil {
		s := steps[last]
		t.Fatalf("runbook.md:%d failed (%v):\n%s\noutput:\n%s\nserver log:\n%s", s.line, runErr, s.command, outputs[last], impactdLog(dir))
	}
	if last != len(steps)-1 {
		t.Fatalf("the runbook stopped after step %d of %d:\n%s", last+1, len(steps), output)
	}
	for i, s := range steps {
		for _, want := range s.expect {
			if !want.matches(outputs[i]) {
				t.Errorf("runbook.md:%d: output does not hold %q:\n%s\noutput:\n%s", s.line, want, s.command, outputs[i])
			}
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("runbook output:\n%s", output)
	}
}

// splitSteps cuts the runbook's output at the step markers: outputs[i] is
// what step i printed, and last is the last step that started.
func splitSteps(output string, n int) (outputs []string, last int) {
	outputs = make([]string, n)
	cur := -1
	for _, l := range strings.SplitAfter(output, "\n") {
		var i int
		if _, err := fmt.Sscanf(l, "@@runbook-step %d\n", &i); err == nil && i >= 0 && i < n {
			cur = i
			continue
		}
		if cur >= 0 {
			outputs[cur] += l
		}
	}
	return outputs, max(cur, 0)
}

// cleanEnv is the test's environment without any IMPACT_* variable, so that
// the runbook sets everything it relies on.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IMPACT_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts returns n distinct free loopback addresses.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs, err := testproc.FreeAddrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// stopGroup ends the process group of run-dev.sh (the script and the
// impactd it started): SIGTERM, which the script forwards, then SIGKILL if
// it has not exited after a while.
func stopGroup(pgid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
}

func impactdLog(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, ".impact-dev", "impactd.log"))
	if err != nil {
		return "(no impactd log: " + err.Error() + ")"
	}
	s := string(b)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}
