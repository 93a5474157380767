package snapshot

import (
	"bytes"
	"testing"

	"github.com/impact-health/impact/internal/demo"
)

// BenchmarkParseRoster validates a generated 200,000-row roster (the demo
// incident's distribution: three cohorts, ~400 practices) with an HMAC
// keyer, as the validation pass of an upload does. It reports rows/s.
func BenchmarkParseRoster(b *testing.B) {
	const rows = 200_000
	var csv bytes.Buffer
	if _, err := demo.WriteRoster(&csv, demo.RosterOptions{N: rows, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	var spec bytes.Buffer
	if err := demo.WriteSpec(&spec); err != nil {
		b.Fatal(err)
	}
	s, err := ParseSpec(spec.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(csv.Len()))
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseRoster(bytes.NewReader(csv.Bytes()), s, testKeyer, nil)
		if err != nil {
			b.Fatal(err)
		}
		if r.Entries != rows {
			b.Fatalf("%d entries", r.Entries)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
