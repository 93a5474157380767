package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/testutil/testproc"
)

// waveLine is what the harness reads of a line of a wave outbox (the file
// `impactctl notice claim --out` writes).
type waveLine struct {
	SubjectID string `json:"subject_id"`
	Version   uint32 `json:"version"`
	NoticeID  string `json:"notice_id"`
	Status    string `json:"status"`
}

func readWave(path string) ([]waveLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []waveLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l waveLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// Impactctl runs impactctl against d's ops listener with the operator's
// token and returns its combined output.
func (w *World) Impactctl(ctx context.Context, e *Env, d *Impactd, args ...string) ([]byte, error) {
	args = append([]string{"--addr", d.AdminAddr(), "--token", w.admin}, args...)
	cmd := exec.CommandContext(ctx, e.ImpactctlBin, args...) // #nosec G204 -- the harness's own binary
	cmd.Env = testproc.CleanEnv()
	return cmd.CombinedOutput()
}

// waveRoster writes the wave's roster: the subjects and rows more filler
// rows, subject_id only (all a wave needs).
func (w *World) waveRoster(path string, rows int) error {
	var b strings.Builder
	b.WriteString("subject_id\n")
	for _, s := range w.Subjects {
		b.WriteString(s + "\n")
	}
	for i := 0; i < min(rows, w.Fillers); i++ {
		fmt.Fprintf(&b, "chaos-fill-%07d\n", i)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// recordWave records an outbox's notices as acknowledged claims made
// between call and ret (the wave's run).
func (w *World) recordWave(lines []waveLine, call, ret time.Duration) {
	for _, l := range lines {
		w.Rec.Add(Op{Client: clientWave, Replica: "impactctl", Kind: KindClaim, Subject: l.SubjectID, Call: call, Return: ret,
			Outcome: OK, Action: "SEND", Pinned: l.Version, NoticeID: l.NoticeID, Status: l.Status})
	}
}

// recordCut records, for a wave that was cut short, a claim of unknown
// outcome for each of the harness's subjects that its kept outbox does
// not hold: impactd may have pinned it and only the answer was lost.
func (w *World) recordCut(kept []waveLine, call, ret time.Duration) {
	have := map[string]bool{}
	for _, l := range kept {
		have[l.SubjectID] = true
	}
	for _, s := range w.Subjects {
		if !have[s] {
			w.Rec.Add(Op{Client: clientWave, Replica: "impactctl", Kind: KindClaim, Subject: s, Call: call, Return: ret,
				Outcome: Unknown, Code: "cut"})
		}
	}
}

// killedWave runs a claim wave with impactctl through d, SIGKILLs d
// killAfter into it, restarts d, and re-runs the same command (same wave
// id). The notices the first run acknowledged (kept in the outbox's .tmp)
// must come back with the same notice ids: no subject gets a second
// notice. It returns whether the kill landed mid-wave.
func (w *World) killedWave(ctx context.Context, e *Env, d *Impactd, rows int, killAfter time.Duration, f *Figures) (bool, error) {
	roster := filepath.Join(e.Dir, "wave.csv")
	out := filepath.Join(e.Dir, "wave.jsonl")
	if err := w.waveRoster(roster, rows); err != nil {
		return false, err
	}
	args := []string{"notice", "claim", "--incident", Incident, "--roster", roster, "--out", out, "--wave-id", "chaos-wave-" + filepath.Base(e.Dir)}
	call1 := w.Rec.Now()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := w.Impactctl(ctx, e, d, args...)
		done <- result{b, err}
	}()
	var first result
	select {
	case first = <-done:
	case <-time.After(killAfter):
		d.Kill()
		first = <-done
	}
	ret1 := w.Rec.Now()
	if first.err == nil {
		// The wave finished before the kill: its notices are acknowledged.
		lines, err := readWave(out)
		if err != nil {
			return false, err
		}
		w.recordWave(lines, call1, ret1)
		if d.Exited() {
			return false, d.Restart(ctx)
		}
		return false, nil
	}
	kept, err := readWave(out + ".tmp")
	if err != nil && !os.IsNotExist(err) {
		return true, err
	}
	// The operator is told what happened and what to do, in that order,
	// with no TLS hint on a plaintext connection that broke mid-wave.
	msg := string(first.out)
	if (len(kept) > 0 && !strings.Contains(msg, "re-run the same command to finish the wave")) || strings.Contains(msg, "--ca-file") {
		f.Violations = append(f.Violations, Violation{Rule: "operator-message",
			Detail: fmt.Sprintf("impactctl's message for a wave cut by impactd's death: %q", strings.TrimSpace(msg))})
	}
	w.recordWave(kept, call1, ret1)
	w.recordCut(kept, call1, ret1)
	start := time.Now()
	if err := d.Restart(ctx); err != nil {
		return true, err
	}
	if _, err := w.WaitRecovered(ctx, d, recoverTimeout); err != nil {
		return true, err
	}
	f.Recovery = max(f.Recovery, time.Since(start))
	call2 := w.Rec.Now()
	b, err := w.Impactctl(ctx, e, d, args...)
	if err != nil {
		return true, fmt.Errorf("re-run of the wave: %v\n%s", err, b)
	}
	final, err := readWave(out)
	if err != nil {
		return true, err
	}
	w.recordWave(final, call2, w.Rec.Now())
	checkRerun(kept, final, f)
	f.Note = appendNote(f.Note, fmt.Sprintf("wave: %d notices kept at the kill, %d after the re-run", len(kept), len(final)))
	return true, nil
}

// checkRerun: a re-run wave's outbox holds each subject once, and a
// subject whose notice was acknowledged before the interruption (kept)
// keeps that notice id: nobody gets a second email.
func checkRerun(kept, final []waveLine, f *Figures) {
	ids := map[string]string{}
	for _, l := range final {
		if prev, ok := ids[l.SubjectID]; ok {
			f.Violations = append(f.Violations, Violation{Rule: "wave-duplicate",
				Detail: fmt.Sprintf("%s is in the re-run's outbox twice (%s, %s)", l.SubjectID, prev, l.NoticeID)})
		}
		ids[l.SubjectID] = l.NoticeID
	}
	for _, l := range kept {
		if got, ok := ids[l.SubjectID]; ok && got != l.NoticeID {
			f.Violations = append(f.Violations, Violation{Rule: "wave-duplicate",
				Detail: fmt.Sprintf("%s: notice %s acknowledged before the kill, the re-run sent %s", l.SubjectID, l.NoticeID, got)})
		}
	}
}

func appendNote(note, s string) string {
	if note == "" {
		return s
	}
	return note + "; " + s
}
