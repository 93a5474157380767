// Package docs holds Impact's documentation (Markdown) and the tests that
// keep it true: the example spec and roster in docs/examples parse with the
// real parsers, the flag tables are those of the binaries' --help, every
// test named beside an invariant exists, and the runbook's commands run, in
// order, against a fresh `make run` server. It has no code of its own.
package docs
