// Package snapshot is the domain of snapshot versions: it parses and
// validates incident specs (YAML or JSON) and roster CSVs, turns rosters into
// keyed store entries with the version digest, and orchestrates staging,
// publishing, rolling back and comparing versions over a store.Store.
//
// Ingestion is whole or nothing (invariant 8): an upload with any
// invalid row is rejected with a *ValidationError naming rows, fields and
// rules (never cell values), and nothing is staged. Rosters are streamed
// twice, once to validate and once to load, so that a roster of millions of
// rows is never held in memory.
package snapshot
