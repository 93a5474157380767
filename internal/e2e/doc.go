// Package e2e holds process-level end-to-end tests of impactd: the tests
// build the impactd binary once, start real processes on free loopback
// ports against throw-away redis-server processes, and drive them over gRPC
// and REST as clients would. It has no non-test code.
package e2e
