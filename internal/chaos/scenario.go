package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Bounds size a run: the short run inside `make test` and the long one of
// `make chaos` differ only here.
type Bounds struct {
	Subjects int           // subjects read and claimed
	Fillers  int           // extra roster rows (longer uploads)
	Readers  int           // concurrent patient sessions
	Claimers int           // concurrent notifiers
	Pause    time.Duration // between one worker's calls
	Phase    time.Duration // load between two faults
	Faults   int           // faults injected per scenario
	// Upload is how long an upload of the roster lasts where a scenario
	// kills impactd inside one (impactd's --upload-read-rate).
	Upload time.Duration
	// AwaitStages: where a kill interrupted an upload on Redis, wait until
	// impactd's reaper collected the stage (its lease, store.DefaultStageLease,
	// then at most one reaper interval: up to a minute after the kill) and
	// count a stage still staging then as a violation. Off in the short
	// run, which would wait that long.
	AwaitStages bool
}

// ShortBounds is the run inside `make test`.
func ShortBounds() Bounds {
	return Bounds{Subjects: 24, Fillers: 1200, Readers: 4, Claimers: 2, Pause: 2 * time.Millisecond, Phase: 500 * time.Millisecond, Faults: 1, Upload: 600 * time.Millisecond}
}

// LongBounds is the run of `make chaos`.
func LongBounds() Bounds {
	return Bounds{Subjects: 200, Fillers: 30000, Readers: 8, Claimers: 4, Pause: time.Millisecond, Phase: 3 * time.Second, Faults: 3, Upload: 2 * time.Second,
		AwaitStages: true}
}

// Figures are one scenario's results.
type Figures struct {
	Scenario string
	Ops      int // recorded operations
	Claims   int // acknowledged claims
	Reads    int // answered reads
	Faults   int // faults injected
	// Lost counts acknowledged pins that the ledger no longer held after
	// the faults; Restored those of them that the wave files put back.
	Lost, Restored int
	// Recovery is the longest time from a fault's end (a killed process
	// started again, a master promoted, the proxy healed) to the next
	// answer.
	Recovery   time.Duration
	Violations []Violation
	Note       string
}

// Line is the scenario's one-line summary.
func (f Figures) Line() string {
	verdict := "ok"
	if len(f.Violations) > 0 {
		verdict = "VIOLATION"
	}
	s := fmt.Sprintf("%-4s %-34s ops=%-6d claims=%-5d reads=%-6d faults=%d lost=%d restored=%d contradictions=%d recovery=%s",
		verdict, f.Scenario, f.Ops, f.Claims, f.Reads, f.Faults, f.Lost, f.Restored, len(f.Violations), f.Recovery.Round(time.Millisecond))
	if f.Note != "" {
		s += "  (" + f.Note + ")"
	}
	return s
}

// Scenario is one fault under load.
type Scenario struct {
	Name string
	Run  func(ctx context.Context, e *Env, b Bounds) (Figures, error)
	// NoFault: the scenario is a race under load, not a fault.
	NoFault bool
}

// Options are what RunAll needs besides the scenarios.
type Options struct {
	Dir      string // parent of every scenario's directory
	Bins     Binaries
	Bounds   Bounds
	Only     string // run only the scenarios whose name contains this
	KeepLogs bool   // keep every scenario's directory, not only failed ones
}

// Result is one scenario's figures, or the error that stopped it.
type Result struct {
	Figures
	Err error
	Dir string // kept when the scenario failed (logs, visualizations)
}

// RunScenario runs one scenario in its own environment. Its directory is
// removed afterwards unless it failed or keep is set.
func RunScenario(ctx context.Context, s Scenario, o Options) (res Result) {
	res.Scenario = s.Name
	e, err := NewEnv(o.Dir, strings.ReplaceAll(s.Name, "/", "-"), o.Bins)
	if err != nil {
		res.Err = err
		return res
	}
	res.Dir = e.Dir
	defer func() {
		if p := recover(); p != nil { // redisserver panics when a restart fails
			res.Err = fmt.Errorf("%v", p)
		}
		e.Close()
		if res.Err == nil && len(res.Violations) == 0 && !o.KeepLogs {
			_ = os.RemoveAll(e.Dir)
			res.Dir = ""
		}
	}()
	f, err := s.Run(ctx, e, o.Bounds)
	if err == nil {
		e.checkLogs(&f)
	}
	f.Scenario = s.Name
	res.Figures, res.Err = f, err
	return res
}

// RunAll runs every selected scenario, prints one line per scenario and a
// summary to out, and returns the results; ok is false if any scenario
// failed or broke a rule.
func RunAll(ctx context.Context, scenarios []Scenario, o Options, out io.Writer) (results []Result, ok bool) {
	ok = true
	start := time.Now()
	var ops, violations, lost, restored, faults int
	for _, s := range scenarios {
		if o.Only != "" && !strings.Contains(s.Name, o.Only) {
			continue
		}
		r := RunScenario(ctx, s, o)
		results = append(results, r)
		if r.Err != nil {
			ok = false
			fmt.Fprintf(out, "FAIL %-34s %v\n", s.Name, r.Err)
		} else {
			fmt.Fprintln(out, r.Line())
		}
		for i, v := range r.Violations {
			if i == 10 {
				fmt.Fprintf(out, "    ... %d more\n", len(r.Violations)-i)
				break
			}
			fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(v.String(), "\n", "\n    "))
		}
		if r.Dir != "" && (r.Err != nil || len(r.Violations) > 0) {
			fmt.Fprintf(out, "    logs and visualizations kept in %s\n", r.Dir)
		}
		ops += r.Ops
		faults += r.Faults
		violations += len(r.Violations)
		lost += r.Lost
		restored += r.Restored
		if len(r.Violations) > 0 {
			ok = false
		}
	}
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(out, "%s: %d scenarios, %d operations, %d faults, %d acknowledged pins lost (%d restored), %d contradictions, %s\n",
		verdict, len(results), ops, faults, lost, restored, violations, time.Since(start).Round(time.Second))
	return results, ok
}

// check judges the world's history and fills the figures.
func (w *World) check(e *Env, f *Figures) {
	rep := Check(Input{History: w.Rec.History(), Truth: w.Truth, VisualizeDir: filepath.Join(e.Dir, "porcupine")})
	f.Ops, f.Claims, f.Reads = rep.Ops, rep.Claims, rep.Reads
	f.Violations = append(f.Violations, rep.Violations...)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// loaded is a scenario's running system: its replicas, its world with the
// first version published, and the load running through the replicas.
type loaded struct {
	w        *World
	replicas []*Impactd
	stopLoad func()
}

// stop ends the load and waits for every worker; calling it again does
// nothing.
func (l *loaded) stop() { l.stopLoad() }

// startLoaded starts one impactd per name with flags, makes the world
// (fillers extra roster rows), publishes its first version and starts
// load (its Replicas are the started ones).
func startLoaded(ctx context.Context, e *Env, b Bounds, fillers int, load Load, flags []string, names ...string) (*loaded, error) {
	specs := make([]replicaSpec, len(names))
	for i, name := range names {
		specs[i] = replicaSpec{name, flags}
	}
	return startReplicas(ctx, e, b, fillers, load, specs...)
}

// replicaSpec is one impactd to start: its name and flags.
type replicaSpec struct {
	name  string
	flags []string
}

// startReplicas is startLoaded with flags for each replica; the world's
// first version is published through the first.
func startReplicas(ctx context.Context, e *Env, b Bounds, fillers int, load Load, specs ...replicaSpec) (*loaded, error) {
	l := &loaded{}
	for _, sp := range specs {
		d, err := e.StartImpactd(ctx, sp.name, sp.flags...)
		if err != nil {
			return nil, err
		}
		l.replicas = append(l.replicas, d)
	}
	w, err := NewWorld(e, b.Subjects, fillers)
	if err != nil {
		return nil, err
	}
	l.w = w
	if _, err := w.StageAndPublish(ctx, l.replicas[0]); err != nil {
		return nil, err
	}
	load.Replicas = l.replicas
	lctx, cancel := context.WithCancel(ctx)
	wait := w.Drive(lctx, load)
	var once sync.Once
	l.stopLoad = func() { once.Do(func() { cancel(); wait() }) }
	e.cleanup(l.stop)
	return l, nil
}

// finish runs the load one more phase, stops it, sweeps every subject
// for acknowledged pins lost, and checks the whole history.
func (l *loaded) finish(ctx context.Context, e *Env, b Bounds, f *Figures) error {
	if err := sleep(ctx, b.Phase); err != nil {
		return err
	}
	l.stop()
	if _, err := lostPins(ctx, l.w, l.replicas[0], f, l.w.Rec.Now(), false); err != nil {
		return err
	}
	l.w.check(e, f)
	return nil
}
