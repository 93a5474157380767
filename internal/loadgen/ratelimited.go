package loadgen

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// impactd runs with its default per-subject limit (--rate-subject 5/s:20,
// global and in memory). The harness spreads its requests over --tokens
// subjects at random, so at R req/s each subject sees R/tokens a second on
// average: 10,000 tokens keep that far below 5/s up to ~25,000 req/s
// (a subject's burst of 20 absorbs the random bunching). The per-address
// limit stays off: every request comes from 127.0.0.1, where production
// traffic comes from many addresses.

// maxRejectedShare is the share of rate-limited requests above which a run
// fails: the figures would then measure refusals, not reads.
const maxRejectedShare = 0.001

// errRateLimited marks a request impactd refused with RESOURCE_EXHAUSTED
// (gRPC) or 429 (REST).
var errRateLimited = errors.New("rate limited")

// rateLimitedGRPC wraps a RESOURCE_EXHAUSTED error so that Drive counts it.
func rateLimitedGRPC(err error) error {
	if grpcstatus.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("%w: %w", errRateLimited, err)
	}
	return err
}

// checkRejections reports the rate-limited requests of every measurement
// to w and fails when more than maxRejectedShare of any one's were.
func checkRejections(w io.Writer, results []Result) error {
	var all, rejected int
	var errs []error
	for _, r := range results {
		all += r.Requests
		rejected += r.Rejected
		if r.Requests > 0 && float64(r.Rejected) > maxRejectedShare*float64(r.Requests) {
			errs = append(errs, fmt.Errorf("%s: %d of %d requests rate-limited (more than %.1f%%): raise --tokens or check impactd's --rate-subject",
				r.Name, r.Rejected, r.Requests, 100*maxRejectedShare))
		}
	}
	fmt.Fprintf(w, "rate-limited (RESOURCE_EXHAUSTED / 429): %d of %d measured requests (impactd --rate-subject at its default)\n", rejected, all)
	return errors.Join(errs...)
}
