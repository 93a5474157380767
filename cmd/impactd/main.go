// Command impactd serves Impact: the patient status API over gRPC and REST,
// and the ops API (snapshots, notices) on loopback listeners.
//
// Every flag has an environment equivalent: --grpc-addr is IMPACT_GRPC_ADDR.
// `impactd --dev` creates a local signing key, JWKS and pepper in the data
// directory so that one machine can run and try everything.
//
// impactd only turns flags and the environment into an app.Config; package
// internal/app builds and runs the server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/impact-health/impact/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "impactd:", err)
		os.Exit(1)
	}
}

// realMain parses the configuration and runs the app until ctx is done and
// the server has drained.
func realMain(ctx context.Context, args []string) error {
	cfg, err := parseConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	return app.Run(ctx, *cfg, os.Stderr)
}
