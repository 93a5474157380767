package mail_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/impact-health/impact/internal/mail"
	"github.com/impact-health/impact/internal/mail/smtptest"
)

// BenchmarkDeliver measures delivery throughput, unpaced, to a go-smtp
// server on loopback, journal fsyncs included:
//
//	go test -run '^$' -bench BenchmarkDeliver -benchtime 2000x ./internal/mail
func BenchmarkDeliver(b *testing.B) {
	for _, c := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", c), func(b *testing.B) {
			srv := smtptest.Start(b, smtptest.Options{})
			msgs := messages(b, b.N)
			j, err := mail.OpenJournal(filepath.Join(b.TempDir(), "journal"))
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			o := mail.Options{Server: mail.Server{Addr: srv.Addr, Timeout: 10 * time.Second}, From: "n@health.example",
				Rate: rate.Inf, Concurrency: c, Journal: j}
			b.ResetTimer()
			start := time.Now()
			if err := mail.Deliver(context.Background(), o, skipAccepted(j, msgs)); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if got := len(srv.Received()); got != b.N {
				b.Fatalf("received %d of %d", got, b.N)
			}
		})
	}
}
