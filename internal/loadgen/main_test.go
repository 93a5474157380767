package loadgen

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets the test binary serve the minimal servers when the harness
// under test re-executes it with MinimalCommand, as impact-load does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == MinimalCommand {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := ServeMinimal(ctx, os.Args[2:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
