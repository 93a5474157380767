package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// impactdKill: impactd is SIGKILLed during an upload, during a publish,
// and during a claim wave run with impactctl, under claims and reads, and
// restarted on the same data (the embedded store's directory, or Redis).
// After each restart the old or the new version is visible, never a
// mix; no raw roster copy is left at rest; every acknowledged pin is
// kept; the re-run wave sends no notice twice.
func impactdKill(storeName string) func(ctx context.Context, e *Env, b Bounds) (Figures, error) {
	return func(ctx context.Context, e *Env, b Bounds) (Figures, error) {
		var f Figures
		flags := []string{"--store", "embedded"}
		if storeName == "redis" {
			srv, err := e.StartRedis()
			if err != nil {
				return f, err
			}
			flags = RedisFlags(srv.Addr())
		}
		// The roster's size sets the upload rate (the world, whose tokens
		// need the dev keys impactd makes, comes after the start).
		roster, _ := (&World{Subjects: make([]string, b.Subjects), Fillers: b.Fillers}).Roster(0)
		rate := max(16<<10, int(float64(len(roster))/b.Upload.Seconds()))
		flags = append(flags, "--upload-read-rate", fmt.Sprint(rate))
		l, err := startLoaded(ctx, e, b, b.Fillers, Load{Readers: b.Readers, Claimers: b.Claimers, Pause: b.Pause}, flags, "A")
		if err != nil {
			return f, err
		}
		w, a := l.w, l.replicas[0]
		restart := func(cut time.Duration) error {
			start := time.Now()
			if err := a.Restart(ctx); err != nil {
				return err
			}
			if _, err := w.WaitRecovered(ctx, a, recoverTimeout); err != nil {
				return err
			}
			f.Recovery = max(f.Recovery, time.Since(start))
			_, err = lostPins(ctx, w, a, &f, cut, false)
			return err
		}
		uploadDir := filepath.Join(e.Dir, a.Name+"-uploads")
		var uploadKilled time.Time // the last kill during an upload

		for i := 0; i < b.Faults; i++ {
			// During an upload.
			if err := sleep(ctx, b.Phase); err != nil {
				return f, err
			}
			cut := w.Rec.Now()
			staged := make(chan error, 1)
			go func() { _, err := w.Stage(ctx, a); staged <- err }()
			if err := sleep(ctx, b.Upload*2/5); err != nil {
				return f, err
			}
			a.Kill()
			uploadKilled = time.Now()
			f.Faults++
			if err := <-staged; err == nil {
				f.Note = appendNote(f.Note, "an upload finished before its kill")
			}
			if err := restart(cut); err != nil {
				return f, err
			}
			if left, _ := filepath.Glob(filepath.Join(uploadDir, "roster-*")); len(left) > 0 {
				f.Violations = append(f.Violations, Violation{Rule: "raw-at-rest",
					Detail: fmt.Sprintf("%d roster spool files with raw subject ids left in the upload directory after the restart", len(left))})
			}

			// During the publish flip.
			v, err := w.Stage(ctx, a)
			if err != nil {
				return f, err
			}
			cut = w.Rec.Now()
			published := make(chan Op, 1)
			go func() { published <- w.Publish(ctx, a, v) }()
			if err := sleep(ctx, time.Duration(i)*time.Millisecond); err != nil {
				return f, err
			}
			a.Kill()
			f.Faults++
			<-published
			if err := restart(cut); err != nil {
				return f, err
			}
			if w.Visible() != v {
				// The flip did not happen: publish again, as the operator would.
				if op := w.Publish(ctx, a, v); op.Outcome != OK {
					return f, fmt.Errorf("publish v%d after the restart: %s", v, op.Code)
				}
			}
		}

		// During a claim wave (after a publish, so that claims are due).
		if _, err := w.StageAndPublish(ctx, a); err != nil {
			return f, err
		}
		cut := w.Rec.Now()
		mid, err := w.killedWave(ctx, e, a, b.Fillers, b.Phase, &f)
		if err != nil {
			return f, err
		}
		if mid {
			f.Faults++
			if _, err := lostPins(ctx, w, a, &f, cut, false); err != nil {
				return f, err
			}
		} else {
			f.Note = appendNote(f.Note, "the wave finished before its kill")
		}
		if err := l.finish(ctx, e, b, &f); err != nil {
			return f, err
		}
		if err := checkStagesCollected(ctx, w, a, storeName, b, uploadKilled, &f); err != nil {
			return f, err
		}
		return f, nil
	}
}

// checkStagesCollected: versions whose upload a kill interrupted must not
// stay staging. The embedded store aborts them when it opens; on Redis the
// stage's lease (store.DefaultStageLease, renewed by the loader) runs out
// and impactd's reaper, which runs at start-up and then every lease,
// collects it (marks it aborted, deletes its records). So the versions
// staging after the run must be gone by two leases after the last kill
// (the lease, then one reaper interval), or at once on the embedded store.
// Without b.AwaitStages they are only counted.
func checkStagesCollected(ctx context.Context, w *World, a *Impactd, storeName string, b Bounds, killed time.Time, f *Figures) error {
	left, err := w.Staging(ctx, a)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	switch {
	case len(left) == 0:
		f.Note = appendNote(f.Note, "no interrupted version left staging")
		return nil
	case storeName == "embedded":
		f.Violations = append(f.Violations, Violation{Rule: "stage-not-collected",
			Detail: fmt.Sprintf("versions %v still staging after impactd restarted on the embedded store, which aborts interrupted uploads when it opens", left)})
		return nil
	case !b.AwaitStages:
		f.Note = appendNote(f.Note, fmt.Sprintf("%d interrupted versions still staging (their collection, up to %s after the kill, is awaited in the long run)",
			len(left), 2*store.DefaultStageLease))
		return nil
	}
	deadline := killed.Add(2*store.DefaultStageLease + 10*time.Second)
	for {
		now, err := w.Staging(ctx, a)
		if err != nil {
			return fmt.Errorf("list snapshots: %w", err)
		}
		if len(now) == 0 {
			f.Note = appendNote(f.Note, fmt.Sprintf("%d interrupted versions collected by the reaper %s after the kill (stage lease %s)",
				len(left), time.Since(killed).Round(time.Second), store.DefaultStageLease))
			return nil
		}
		if time.Now().After(deadline) {
			f.Violations = append(f.Violations, Violation{Rule: "stage-not-collected",
				Detail: fmt.Sprintf("versions %v still staging %s after the kill that interrupted their upload; their stage lease is %s and the reaper runs every lease",
					now, time.Since(killed).Round(time.Second), store.DefaultStageLease)})
			return nil
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}
