// Command impactd serves Impact: the patient status API over gRPC and REST,
// and the ops API (snapshots, notices) on loopback listeners.
//
// Every flag has an environment equivalent: --grpc-addr is IMPACT_GRPC_ADDR.
// `impactd --dev` creates a local signing key, JWKS and pepper in the data
// directory so that one machine can run and try everything.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
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
