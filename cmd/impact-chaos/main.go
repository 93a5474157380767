// Command impact-chaos is the fault harness: it runs each scenario (real
// impactd, redis-server and redis-sentinel processes, faults under
// concurrent claims, reads and publishes), checks every recorded history
// with Porcupine and the answer checks, prints one line per scenario with
// its figures and a summary, and exits non-zero on any violation.
//
//	impact-chaos --impactd bin/impactd --impactctl bin/impactctl [--short] [--only NAME]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/impact-health/impact/internal/chaos"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("impact-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		bins     chaos.Binaries
		short    bool
		only     string
		dir      string
		keep     bool
		subjects int
		faults   int
	)
	fs.StringVar(&bins.Impactd, "impactd", "bin/impactd", "impactd binary")
	fs.StringVar(&bins.Impactctl, "impactctl", "bin/impactctl", "impactctl binary")
	fs.BoolVar(&short, "short", false, "the short bounds of the run inside make test")
	fs.StringVar(&only, "only", "", "run only the scenarios whose name contains this")
	fs.StringVar(&dir, "dir", "", "parent directory of the scenarios' processes and logs (default: a temporary one)")
	fs.BoolVar(&keep, "keep", false, "keep every scenario's directory (failed ones are always kept)")
	fs.IntVar(&subjects, "subjects", 0, "subjects per scenario (default: the bounds')")
	fs.IntVar(&faults, "faults", 0, "faults per scenario (default: the bounds')")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "impact-chaos: unexpected arguments %q\n", fs.Args())
		return 2
	}
	for _, b := range []string{bins.Impactd, bins.Impactctl} {
		if _, err := os.Stat(b); err != nil {
			fmt.Fprintf(stderr, "impact-chaos: %v (run make build, or pass --impactd and --impactctl)\n", err)
			return 2
		}
	}
	b := chaos.LongBounds()
	if short {
		b = chaos.ShortBounds()
	}
	if subjects > 0 {
		b.Subjects = subjects
	}
	if faults > 0 {
		b.Faults = faults
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "impact-chaos-")
		if err != nil {
			fmt.Fprintln(stderr, "impact-chaos:", err)
			return 1
		}
		dir = d
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	fmt.Fprintf(stdout, "impact-chaos: %d subjects, %d roster rows, %d readers, %d claimers, %d faults per scenario; work in %s\n",
		b.Subjects, b.Subjects+b.Fillers, b.Readers, b.Claimers, b.Faults, dir)
	_, ok := chaos.RunAll(ctx, chaos.Scenarios(), chaos.Options{Dir: dir, Bins: bins, Bounds: b, Only: only, KeepLogs: keep}, stdout)
	if !ok {
		return 1
	}
	if !keep {
		_ = os.Remove(dir) // empty unless a scenario failed
	}
	return 0
}
