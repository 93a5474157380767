package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
)

// The claim phase: a wave of Claims claims (ClaimNotices on the ops gRPC
// listener, as `impactctl notice claim` sends them) on impactd A alone,
// then an equal wave of other subjects on A while Replicas-1 more impactd
// processes on the same Redis run beside it. Patient reads run during
// each wave at the same paced total rate: on A when it is alone, on the
// other replicas when there are some. What the wave on A pays for the
// other replicas is the figure (with replicas that read from Redis, about
// nothing; a protocol in which each claim waits for every live replica
// shows its cost here).

// waveResult is one wave's figures.
type waveResult struct {
	Replicas int
	Claims   int // claims sent
	Answered int // claims answered with SEND for their subject
	Errors   int // claims not answered or answered otherwise
	FirstErr error
	Wall     time.Duration // first send to last answer
	P50, P99 time.Duration // per claim, send to answer
	Max      time.Duration
	Reads    Result // the patient reads alongside
}

// ClaimsPerSec is the wave's rate of answered claims.
func (w waveResult) ClaimsPerSec() float64 {
	if w.Wall <= 0 {
		return 0
	}
	return float64(w.Answered) / w.Wall.Seconds()
}

// claimPhase runs the two waves and stops the replicas it started.
func (h *harness) claimPhase(ctx context.Context) ([]waveResult, error) {
	cfg := h.cfg
	if len(h.claimSubjects) < 2 {
		return nil, errors.New("claim phase: no subjects sampled")
	}
	readLoad := Load{Concurrency: cfg.Concurrency, Rate: cfg.ClaimReadRate}
	onA := h.random(h.grpcCall(h.impactd.grpc))
	h.logf("claim wave of %d on 1 replica (reads paced at %.0f req/s on it)", len(h.claimSubjects[0]), cfg.ClaimReadRate)
	one, err := h.waveWithReads(ctx, 1, h.claimSubjects[0], "load-claims-1", readLoad, onA)
	if err != nil {
		return nil, err
	}
	out := []waveResult{one}
	if cfg.Replicas < 2 {
		return out, nil
	}

	var others []*impactdProc
	defer func() {
		for _, p := range others {
			p.stop()
		}
	}()
	h.logf("starting %d more impactd replicas on the same Redis", cfg.Replicas-1)
	for i := 2; i <= cfg.Replicas; i++ {
		p, err := h.startReplica(ctx, i)
		if err != nil {
			return nil, err
		}
		others = append(others, p)
	}
	calls := make([]tokenCall, len(others))
	for i, p := range others {
		calls[i] = h.grpcCall(p.grpc)
		if err := h.prewarm(ctx, calls[i]); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i+2, err)
		}
	}
	onOthers := func(ctx context.Context, w int, rnd *rand.Rand) error {
		return calls[w%len(calls)](ctx, w/len(calls), rnd.IntN(len(h.tokens)))
	}
	h.logf("claim wave of %d on replica 1 of %d (reads paced at %.0f req/s on the others)", len(h.claimSubjects[1]), cfg.Replicas, cfg.ClaimReadRate)
	many, err := h.waveWithReads(ctx, cfg.Replicas, h.claimSubjects[1], "load-claims-2", readLoad, onOthers)
	if err != nil {
		return nil, err
	}
	return append(out, many), nil
}

// startReplica starts impactd number i on the harness's Redis with the
// flags of the first one, in a data directory of its own holding a copy of
// the first one's dev keys (the same token key and pepper).
func (h *harness) startReplica(ctx context.Context, i int) (*impactdProc, error) {
	dir := filepath.Join(h.work, fmt.Sprintf("impactd-%d", i))
	src := filepath.Join(h.dataDir, "dev")
	if err := os.MkdirAll(filepath.Join(dir, "dev"), 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "dev", e.Name()), b, 0o600); err != nil {
			return nil, err
		}
	}
	return startImpactd(ctx, h.cfg.Impactd, dir, h.redisAt, h.cfg.RedisQuery, h.cfg.LogLevel, h.impactdFlags)
}

// waveWithReads runs reads paced at l.Rate (none when 0) until the wave of
// subjects ends.
func (h *harness) waveWithReads(ctx context.Context, replicas int, subjects []string, waveID string, l Load, reads Request) (waveResult, error) {
	stop := make(chan struct{})
	l.Warmup, l.Duration = 0, 10*time.Minute // bounded; ends with the wave
	readsc := make(chan Result, 1)
	if l.Rate > 0 {
		go func() {
			readsc <- Drive(ctx, fmt.Sprintf("reads during the claim wave, %d replica(s)", replicas), l, stop, reads)
		}()
		time.Sleep(200 * time.Millisecond) // the reads are running
	} else {
		readsc <- Result{}
	}
	w, err := h.claimWave(ctx, subjects, waveID)
	close(stop)
	w.Replicas, w.Reads = replicas, <-readsc
	return w, err
}

// claimWave sends one ClaimNotices request per subject on impactd A's ops
// listener, at most ClaimWindow ahead of the answers, and times each claim
// from its send to its answer. A claim answered other than SEND for its
// subject, or not answered, counts as an error; only a stream that cannot
// be opened fails the phase.
func (h *harness) claimWave(ctx context.Context, subjects []string, waveID string) (waveResult, error) {
	w := waveResult{Claims: len(subjects)}
	cctx, cancel := context.WithTimeout(h.adminCtx, 10*time.Minute)
	defer cancel()
	stream, err := impactv1.NewNoticeServiceClient(h.adminConn).ClaimNotices(cctx)
	if err != nil {
		return w, fmt.Errorf("claim wave: %w", err)
	}
	window := make(chan struct{}, h.cfg.ClaimWindow)
	sent := make(chan time.Time, len(subjects)) // send times, in order
	sendErr := make(chan error, 1)
	start := time.Now()
	go func() {
		for _, s := range subjects {
			select {
			case window <- struct{}{}:
			case <-cctx.Done():
				sendErr <- cctx.Err()
				return
			}
			sent <- time.Now()
			if err := stream.Send(&impactv1.ClaimNoticesRequest{IncidentId: demo.IncidentID, SubjectId: s, IdempotencyKey: waveID + ":" + s}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	lat := make([]time.Duration, 0, len(subjects))
	for i := range subjects {
		r, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("stream ended after %d of %d answers", i, len(subjects))
			}
			w.Errors += len(subjects) - i
			if w.FirstErr == nil {
				w.FirstErr = err
			}
			break
		}
		lat = append(lat, time.Since(<-sent)) // the time of the send this answers
		<-window
		if r.GetSubjectId() != subjects[i] || r.GetClaim().GetAction() != impactv1.ClaimAction_SEND || r.GetReplayed() {
			w.Errors++
			if w.FirstErr == nil {
				w.FirstErr = fmt.Errorf("claim %d: action %v (replayed %v), want a new SEND for its subject", i, r.GetClaim().GetAction(), r.GetReplayed())
			}
			continue
		}
		w.Answered++
	}
	w.Wall = time.Since(start)
	h.pinned += w.Claims // an upper bound: an unanswered claim may have pinned too
	cancel()
	if err := <-sendErr; err != nil && w.FirstErr == nil && !errors.Is(err, context.Canceled) {
		w.FirstErr = err
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		w.P50, w.P99, w.Max = lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	return w, nil
}
