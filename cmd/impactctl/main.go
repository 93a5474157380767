// Command impactctl is the ops CLI of Impact: it uploads, inspects,
// publishes and rolls back snapshot versions, claims notices for the email
// pipeline (one subject or a whole wave), reports notice progress, mints
// dev tokens and writes a demo incident.
//
// It talks to the ops gRPC listener of impactd (--addr, IMPACT_ADDR, default
// 127.0.0.1:9091) with a bearer token (--token, IMPACT_TOKEN). Every command
// exits 0 on success, and otherwise non-zero with a one-line reason on
// stderr; --json prints machine-readable output.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one impactctl command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return newApp(stdout, stderr, os.LookupEnv).run(ctx, args)
}
