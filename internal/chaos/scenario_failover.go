package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/impact-health/impact/internal/store/replica"
	"github.com/impact-health/impact/internal/testutil/testproc"
)

// replicationLag delays the replication stream (a link between zones), so
// that the replica runs behind the master when it is killed.
const replicationLag = 100 * time.Millisecond

// failover: a master, its replica (behind by replicationLag) and a Sentinel; claims are made by
// impactctl waves (their outboxes are the recovery record) while patients
// read. The master is SIGKILLed during a wave and the Sentinel promotes
// the replica. Replication is asynchronous, so pins acknowledged just
// before the kill may be missing on the new master: they are counted,
// found by comparing the wave files with the ledger, and put back with
// `impactctl notice restore`; then the interrupted wave is re-run. The
// history is checked before the kill and after the repair.
func failover(ctx context.Context, e *Env, b Bounds) (Figures, error) {
	var f Figures
	set, err := e.StartSentinelSet(ctx, replicationLag)
	if err != nil {
		return f, err
	}
	l, err := startLoaded(ctx, e, b, b.Fillers, Load{Readers: b.Readers, Pause: b.Pause}, set.Flags(), "A")
	if err != nil {
		return f, err
	}
	w, a := l.w, l.replicas[0]

	roster := filepath.Join(e.Dir, "wave.csv")
	// The waves claim the harness's own subjects only: every pin they
	// acknowledge is then read back (fillers have no patient token), and a
	// wave is shorter than the replication lag, so the kill finds
	// acknowledged pins the replica has not received.
	if err := w.waveRoster(roster, 0); err != nil {
		return f, err
	}
	var files []string
	wave := func(n int) []string {
		out := filepath.Join(e.Dir, fmt.Sprintf("wave-%d.jsonl", n))
		files = append(files, out)
		return []string{"notice", "claim", "--incident", Incident, "--roster", roster, "--out", out, "--wave-id", fmt.Sprintf("chaos-failover-%d", n)}
	}

	// Wave 0, whole; then a new version and wave 1, with the master killed.
	call := w.Rec.Now()
	if b, err := w.Impactctl(ctx, e, a, wave(0)...); err != nil {
		return f, fmt.Errorf("wave 0: %v\n%s", err, b)
	}
	lines, err := readWave(files[0])
	if err != nil {
		return f, err
	}
	took := w.Rec.Now() - call
	w.recordWave(lines, call, w.Rec.Now())
	if _, err := w.StageAndPublish(ctx, a); err != nil {
		return f, err
	}
	// The replica has everything but what wave 1 will write.
	if err := set.WaitCaughtUp(ctx, recoverTimeout); err != nil {
		return f, err
	}
	args1 := wave(1)
	call = w.Rec.Now()
	done := make(chan error, 1)
	go func() { _, err := w.Impactctl(ctx, e, a, args1...); done <- err }()
	// The master dies mid-wave, or at the latest as the wave returns:
	// either way its last acknowledged pins are still on the lagging link.
	var waveErr error
	var killAt time.Duration
	var killed time.Time // recovery is measured from the kill, not from the wave's end
	select {
	case waveErr = <-done:
		set.KillMaster()
		killAt, killed = w.Rec.Now(), time.Now()
	case <-time.After(took * 3 / 4): // wave 1 is as long as wave 0
		set.KillMaster()
		killAt, killed = w.Rec.Now(), time.Now()
		waveErr = <-done
	}
	f.Faults++
	kept, err := readWave(files[1])
	interrupted := err != nil
	if interrupted {
		files[1] += ".tmp"
		if kept, err = readWave(files[1]); err != nil && !os.IsNotExist(err) {
			return f, err
		}
		if os.IsNotExist(err) {
			files = files[:1]
		}
	}
	w.recordWave(kept, call, w.Rec.Now())
	if interrupted {
		w.recordCut(kept, call, w.Rec.Now())
		f.Note = appendNote(f.Note, fmt.Sprintf("wave 1 interrupted, %d notices kept", len(kept)))
	}
	if !interrupted && waveErr != nil {
		return f, fmt.Errorf("wave 1 failed and left no outbox: %v", waveErr)
	}

	// Serving again: the first answer after the kill.
	if _, err := w.WaitRecovered(ctx, a, recoverTimeout); err != nil {
		return f, err
	}
	f.Recovery = time.Since(killed)
	if err := set.waitMaster(ctx, set.Replica.Addr(), recoverTimeout); err != nil {
		return f, err
	}
	f.Note = appendNote(f.Note, fmt.Sprintf("replication link +%s; serving %s after the master's kill", replicationLag, f.Recovery.Round(time.Millisecond)))
	// Until its next lease renewal tells it that the new master's change
	// stream is behind what it applied, A may still answer from memory the
	// pins the new master lost (what the emails said: not a contradiction).
	// Within one lease of Redis answering again, that renewal has happened
	// (every third of a lease) or the lease has lapsed, and A answers from
	// the new master: the sweep below then reads the ledger as it is.
	if err := sleep(ctx, replica.DefaultLease); err != nil {
		return f, err
	}

	// Compare the wave files with the ledger: every pin they hold that the
	// ledger no longer has, or has older, was lost in the failover. The
	// operator's tool, `impactctl notice verify`, must name the same
	// subjects.
	lost, err := w.lostAgainstWaves(ctx, a, files)
	if err != nil {
		return f, err
	}
	f.Lost = len(lost)
	if err := w.verifyNamesLost(ctx, e, a, files, lost, &f); err != nil {
		return f, err
	}
	if b, err := w.Impactctl(ctx, e, a, append([]string{"notice", "restore"}, fileFlags(files)...)...); err != nil {
		return f, fmt.Errorf("notice restore: %v\n%s", err, b)
	}
	still, err := w.lostAgainstWaves(ctx, a, files)
	if err != nil {
		return f, err
	}
	f.Restored = f.Lost - len(still)
	for _, l := range still {
		f.Violations = append(f.Violations, Violation{Rule: "not-restored",
			Detail: fmt.Sprintf("%s: the wave file holds pin v%d (%s); after notice restore the ledger still lacks it", l.SubjectID, l.Version, l.NoticeID)})
	}
	if interrupted {
		call2 := w.Rec.Now()
		if b, err := w.Impactctl(ctx, e, a, args1...); err != nil {
			return f, fmt.Errorf("re-run of wave 1: %v\n%s", err, b)
		}
		final, err := readWave(filepath.Join(e.Dir, "wave-1.jsonl"))
		if err != nil {
			return f, err
		}
		w.recordWave(final, call2, w.Rec.Now())
		checkRerun(kept, final, &f)
	}
	after, err := w.Sweep(ctx, a)
	if err != nil {
		return f, err
	}
	resume := w.Rec.Now()
	if err := sleep(ctx, b.Phase); err != nil {
		return f, err
	}
	l.stop()

	// The history before the kill, and after the repair from the pins the
	// sweep read.
	h := w.Rec.History()
	before := Check(Input{History: Segment(h, 0, killAt), Truth: w.Truth, VisualizeDir: filepath.Join(e.Dir, "porcupine-before")})
	pins := map[string]Pin{}
	for s, op := range after {
		pins[s] = Pin{Version: op.Pinned, NoticeID: op.NoticeID}
	}
	afterRep := Check(Input{History: Segment(h, resume, 1<<62), Truth: w.Truth, Visible: w.Visible(), Pins: pins,
		VisualizeDir: filepath.Join(e.Dir, "porcupine-after")})
	f.Ops, f.Claims, f.Reads = len(h), before.Claims+afterRep.Claims, before.Reads+afterRep.Reads
	f.Violations = append(f.Violations, before.Violations...)
	f.Violations = append(f.Violations, afterRep.Violations...)
	return f, nil
}

func fileFlags(files []string) []string {
	var out []string
	for _, p := range files {
		out = append(out, "--file", p)
	}
	return out
}

// lostAgainstWaves reads every subject of the wave files that the harness
// reads (its own subjects) and returns the lines whose pin the ledger does
// not hold: none, or an older one.
func (w *World) lostAgainstWaves(ctx context.Context, d *Impactd, files []string) ([]waveLine, error) {
	newest := map[string]waveLine{}
	for _, p := range files {
		lines, err := readWave(p)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if l.Version >= newest[l.SubjectID].Version {
				newest[l.SubjectID] = l
			}
		}
	}
	now, err := w.Sweep(ctx, d)
	if err != nil {
		return nil, err
	}
	var lost []waveLine
	for _, s := range w.Subjects {
		if l, ok := newest[s]; ok && now[s].Pinned < l.Version {
			lost = append(lost, l)
		}
	}
	return lost, nil
}

// verifyNamesLost runs `impactctl --json notice verify` over the wave files
// and records a violation unless the subjects of the lines it reports
// (missing or older pins) are exactly lost. Verify changes nothing; it
// exits 1 when it reports a line.
func (w *World) verifyNamesLost(ctx context.Context, e *Env, d *Impactd, files []string, lost []waveLine, f *Figures) error {
	args := append([]string{"--addr", d.AdminAddr(), "--token", w.admin, "--json", "notice", "verify", "--incident", Incident}, fileFlags(files)...)
	cmd := exec.CommandContext(ctx, e.ImpactctlBin, args...) // #nosec G204 -- the harness's own binary
	cmd.Env = testproc.CleanEnv()
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return fmt.Errorf("notice verify: %v\n%s", err, out)
	}
	var rep struct {
		Missing, Older uint32
		Truncated      bool
		Problems       []struct {
			File string `json:"file"`
			Line int    `json:"line"`
		} `json:"problems"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return fmt.Errorf("notice verify --json: %v\n%s", err, out)
	}
	lines := map[string][]waveLine{}
	var named []string
	for _, p := range rep.Problems {
		if _, ok := lines[p.File]; !ok {
			ls, err := readWave(p.File)
			if err != nil {
				return err
			}
			lines[p.File] = ls
		}
		if p.Line < 1 || p.Line > len(lines[p.File]) {
			return fmt.Errorf("notice verify names line %d of %s, which has %d", p.Line, p.File, len(lines[p.File]))
		}
		if s := lines[p.File][p.Line-1].SubjectID; !slices.Contains(named, s) {
			named = append(named, s)
		}
	}
	var want []string
	for _, l := range lost {
		want = append(want, l.SubjectID)
	}
	slices.Sort(named)
	slices.Sort(want)
	if rep.Truncated || !slices.Equal(named, want) {
		f.Violations = append(f.Violations, Violation{Rule: "verify-differs",
			Detail: fmt.Sprintf("notice verify reports %d subjects (truncated %v), the ledger comparison %d", len(named), rep.Truncated, len(want))})
	}
	f.Note = appendNote(f.Note, fmt.Sprintf("notice verify named all %d", len(named)))
	return nil
}
