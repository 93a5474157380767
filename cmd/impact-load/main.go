// Command impact-load is Impact's load harness (`make load`): it starts
// redis-server and impactd, publishes a demo roster, and measures impactd's
// gRPC and REST status reads next to a minimal grpc-go server and a minimal
// net/http handler driven by the same generator. See package loadgen.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/impact-health/impact/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := loadgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "impact-load:", err)
		os.Exit(1)
	}
}
