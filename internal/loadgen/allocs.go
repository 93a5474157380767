package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// mallocsMetric is the Prometheus counter of heap objects a Go process has
// allocated (client_golang's Go collector: /gc/heap/allocs:objects plus
// /gc/heap/tiny/allocs:objects). impactd serves it at /metrics on the ops
// REST listener; the minimal process at /debug/mallocs.
const mallocsMetric = "go_memstats_mallocs_total"

// processMallocs is this process's mallocsMetric, computed as the Go
// collector computes it.
func processMallocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += x.Value.Uint64()
		}
	}
	return n
}

// mallocCounter reads one process's allocation counter over HTTP. The
// scrape allocates in that process too: calibrate measures one scrape's
// share, which read subtracts.
type mallocCounter struct {
	url    string
	client *http.Client
	scrape uint64 // allocations of one scrape, as calibrate measured them
}

func newMallocCounter(url string) *mallocCounter {
	return &mallocCounter{url: url, client: &http.Client{Timeout: 5 * time.Second}}
}

// calibrate scrapes three times in a row and keeps the smaller of the two
// differences: the allocations one scrape costs (plus whatever else ran).
func (m *mallocCounter) calibrate(ctx context.Context) error {
	var v [3]uint64
	for i := range v {
		var err error
		if v[i], err = m.read(ctx); err != nil {
			return err
		}
	}
	m.scrape = min(v[1]-v[0], v[2]-v[1])
	return nil
}

// between is the allocations from a to b, less the one scrape counted in b.
func (m *mallocCounter) between(a, b uint64) uint64 {
	if b < a || b-a < m.scrape {
		return 0
	}
	return b - a - m.scrape
}

// read is the counter's value now.
func (m *mallocCounter) read(ctx context.Context) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", m.url, resp.StatusCode)
	}
	return parseMallocs(bufio.NewScanner(resp.Body))
}

// parseMallocs finds mallocsMetric in the Prometheus text format.
func parseMallocs(sc *bufio.Scanner) (uint64, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), mallocsMetric)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%s: value %q", mallocsMetric, f[len(f)-1])
		}
		return uint64(v), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New(mallocsMetric + " not found")
}
