package snapshot

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/impact-health/impact/internal/demo"
)

// BenchmarkParseRoster validates a generated 200,000-row roster (the demo
// incident's distribution: three cohorts, ~400 practices) with an HMAC
// keyer, as the validation pass of an upload does. It reports rows/s.
func BenchmarkParseRoster(b *testing.B) {
	const rows = 200_000
	csv, spec := demoUpload(b, rows)
	s, err := ParseSpec(spec)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(csv)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseRoster(bytes.NewReader(csv), s, testKeyer, nil)
		if err != nil {
			b.Fatal(err)
		}
		if r.Entries != rows {
			b.Fatalf("%d entries", r.Entries)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkUpload is a whole upload of a 200,000-row roster into the
// embedded store: validate, stage, load in batches, commit (the store
// re-reads and verifies the digest). It reports rows/s.
func BenchmarkUpload(b *testing.B) {
	const rows = 200_000
	csv, spec := demoUpload(b, rows)
	svc := NewService(openStore(b), testKeyer)
	req := UploadRequest{
		Incident: demo.IncidentID,
		Spec:     spec,
		Roster:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(csv)), nil },
		Actor:    "bench",
	}
	b.ReportAllocs()
	for b.Loop() {
		info, err := svc.Upload(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if info.Counts.Entries != rows {
			b.Fatalf("%d entries", info.Counts.Entries)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// demoUpload generates the demo incident's spec and a roster of n rows.
func demoUpload(b *testing.B, n int) (csv, spec []byte) {
	var r, s bytes.Buffer
	if _, err := demo.WriteRoster(&r, demo.RosterOptions{N: n, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if err := demo.WriteSpec(&s); err != nil {
		b.Fatal(err)
	}
	return r.Bytes(), s.Bytes()
}
