package server

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// BenchmarkAnswerPadding is what padding adds to building a status answer
// (answerPB), per transport, for the demo incident's answers (an affected
// patient notified at v1, read at v2; a patient absent from the roster),
// with the target cached as it is after an incident's first read. The
// encodings the transports then do are measured beside it for scale.
func BenchmarkAnswerPadding(b *testing.B) {
	var buf bytes.Buffer
	if err := demo.WriteSpec(&buf); err != nil {
		b.Fatal(err)
	}
	spec, err := snapshot.ParseSpec(buf.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	vs := versionsByNumber{1: publishedSpec(spec), 2: publishedSpec(spec)}
	answers := map[string]status.Answer{
		"affected": answerAt(vs, demo.IncidentID, 2, store.Record{Status: store.Affected, Cohorts: 1},
			&store.Pin{Version: 1, Record: store.Record{Status: store.Affected, Cohorts: 1}, NoticeID: "v1-RI63NS37X4OEXZBL", NotifiedAt: time.Now()}),
		"absent": answerAt(vs, demo.IncidentID, 2, store.Record{}, nil),
	}
	ctx := context.Background()
	p := newPadder(vs, nil)
	for _, name := range []string{"affected", "absent"} {
		a := answers[name]
		b.Run(name+"/build", func(b *testing.B) {
			for b.Loop() {
				_ = answerPB(a)
			}
		})
		b.Run(name+"/build+pad-grpc", func(b *testing.B) {
			for b.Loop() {
				if err := p.pad(ctx, answerPB(a), a.NotifiedVersion, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/build+pad-rest", func(b *testing.B) {
			for b.Loop() {
				if err := p.pad(ctx, answerPB(a), a.NotifiedVersion, true); err != nil {
					b.Fatal(err)
				}
			}
		})
		unpaddedPB := answerPB(a)
		b.Run(name+"/proto-size", func(b *testing.B) {
			for b.Loop() {
				_ = proto.Size(unpaddedPB)
			}
		})
		b.Run(name+"/json-len", func(b *testing.B) {
			for b.Loop() {
				if _, err := answerJSONLen(unpaddedPB); err != nil {
					b.Fatal(err)
				}
			}
		})
		padded := answerPB(a)
		if err := p.pad(ctx, padded, a.NotifiedVersion, false); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/marshal-proto", func(b *testing.B) {
			for b.Loop() {
				if _, err := proto.Marshal(padded); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/marshal-json", func(b *testing.B) {
			for b.Loop() {
				if _, err := restJSON.Marshal(padded); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The first read at a new visible version: every version's part is
	// cached, the target is not.
	b.Run("new-target", func(b *testing.B) {
		for b.Loop() {
			delete(p.targets, versionKey{demo.IncidentID, 2})
			if _, err := p.target(ctx, demo.IncidentID, 2, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("version-part", func(b *testing.B) {
		for b.Loop() {
			if _, err := specPart(spec, 2); err != nil {
				b.Fatal(err)
			}
		}
	})
}
