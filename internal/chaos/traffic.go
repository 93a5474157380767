package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server/errinfo"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// Incident is the incident every scenario serves (the demo spec).
const Incident = demo.IncidentID

// callTimeout bounds every call of the traffic generator; impactd's own
// request deadline (Env.RequestTimeout) is shorter, so a slow store shows
// as UNAVAILABLE from the server, not as the client giving up.
const callTimeout = 8 * time.Second

// Client ids of the recorded operations: readers from 0, claimers from
// clientClaimers, the publisher, the final and probe reads.
const (
	clientClaimers  = 100
	clientPublisher = 200
	clientFinal     = 300
	clientProbe     = 301
	clientWave      = 400
)

// World is a scenario's incident: its subjects and their tokens, the
// rosters it stages (one generation after another) and what each staged
// version says.
type World struct {
	Subjects []string
	Fillers  int
	Truth    Truth
	Rec      *Recorder

	spec   []byte
	tokens map[string]string
	admin  string

	mu      sync.Mutex
	visible uint32 // the visible version the harness last saw acknowledged
	gen     int
}

// NewWorld makes n subjects ("chaos-0000"...) and fillers more rows per
// roster (they make uploads take longer and are never read).
func NewWorld(e *Env, n, fillers int) (*World, error) {
	var spec bytes.Buffer
	if err := demo.WriteSpec(&spec); err != nil {
		return nil, err
	}
	w := &World{Fillers: fillers, Truth: Truth{}, Rec: NewRecorder(), spec: spec.Bytes(), tokens: map[string]string{}}
	var err error
	if w.admin, err = e.Token("chaos-operator", auth.ScopeAdmin, auth.ScopeNotify); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		s := fmt.Sprintf("chaos-%04d", i)
		w.Subjects = append(w.Subjects, s)
		if w.tokens[s], err = e.Token(s); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// AdminToken is the operator's token (impact.admin and impact.notify).
func (w *World) AdminToken() string { return w.admin }

// Visible is the visible version the harness last saw.
func (w *World) Visible() uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.visible
}

// Roster is generation g's roster and what it says of each subject:
// subject i is affected, under review or absent (not affected) by
// (i+g) mod 3, so every generation changes every subject's status and
// a claim after each publish is due again.
func (w *World) Roster(g int) ([]byte, map[string]string) {
	var b bytes.Buffer
	b.WriteString(demo.RosterHeader + "\n")
	truth := map[string]string{}
	for i, s := range w.Subjects {
		switch (i + g) % 3 {
		case 0:
			fmt.Fprintf(&b, "%s,affected,northland,GP-NL-001\n", s)
			truth[s] = "AFFECTED"
		case 1:
			fmt.Fprintf(&b, "%s,under_review,referrals,GP-RF-101\n", s)
			truth[s] = "UNDER_REVIEW"
		}
	}
	// Fillers alternate between affected and under review: every wave's
	// claims are due.
	for i := 0; i < w.Fillers; i++ {
		s := fmt.Sprintf("chaos-fill-%07d", i)
		if g%2 == 0 {
			fmt.Fprintf(&b, "%s,affected,uploads,GP-NL-002\n", s)
			truth[s] = "AFFECTED"
		} else {
			fmt.Fprintf(&b, "%s,under_review,referrals,GP-RF-102\n", s)
			truth[s] = "UNDER_REVIEW"
		}
	}
	return b.Bytes(), truth
}

func (w *World) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+w.admin), cancel
}

// Stage uploads the next generation's roster through d and returns the
// version it was staged as; what it says goes into the truth.
func (w *World) Stage(ctx context.Context, d *Impactd) (uint32, error) {
	w.mu.Lock()
	w.gen++
	g := w.gen
	w.mu.Unlock()
	roster, truth := w.Roster(g)
	ctx, cancel := w.ctx(ctx)
	defer cancel()
	info, err := testclient.Upload(ctx, impactv1.NewSnapshotServiceClient(d.Admin), Incident, w.spec, roster, 256<<10)
	if err != nil {
		return 0, fmt.Errorf("upload through %s: %w", d.Name, err)
	}
	w.mu.Lock()
	w.Truth[info.GetVersion()] = truth
	w.mu.Unlock()
	return info.GetVersion(), nil
}

// Publish records a publish of v through d, expecting the visible version
// the harness last saw.
func (w *World) Publish(ctx context.Context, d *Impactd, v uint32) Op {
	return w.PublishAs(ctx, clientPublisher, d, v)
}

// PublishAs is Publish recorded as client's.
func (w *World) PublishAs(ctx context.Context, client int, d *Impactd, v uint32) Op {
	op, _ := w.publish(ctx, client, d, v)
	return op
}

// publish is PublishAs, with the call's error.
func (w *World) publish(ctx context.Context, client int, d *Impactd, v uint32) (Op, error) {
	expect := w.Visible()
	op := Op{Client: client, Replica: d.Name, Kind: KindPublish, Publish: v, Expect: expect, Call: w.Rec.Now()}
	cctx, cancel := w.ctx(ctx)
	_, err := testclient.Publish(cctx, impactv1.NewSnapshotServiceClient(d.Admin), Incident, v, expect)
	cancel()
	op.Return = w.Rec.Now()
	op.Outcome, op.Code = classify(err, codes.FailedPrecondition)
	w.Rec.Add(op)
	if op.Outcome == OK {
		w.mu.Lock()
		w.visible = max(w.visible, v)
		w.mu.Unlock()
	}
	return op, err
}

// Staging lists the incident's versions still in state STAGING (a load
// in progress, or one a crash interrupted and nothing aborted).
func (w *World) Staging(ctx context.Context, d *Impactd) ([]uint32, error) {
	ctx, cancel := w.ctx(ctx)
	defer cancel()
	r, err := impactv1.NewSnapshotServiceClient(d.Admin).ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: Incident})
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, s := range r.GetSnapshots() {
		if s.GetState() == impactv1.SnapshotState_STAGING {
			out = append(out, s.GetVersion())
		}
	}
	return out, nil
}

// StageAndPublish stages the next generation and publishes it; the publish
// must be acknowledged. A publish refused because notices were claimed
// between its diff and its compare-and-set (CORRECTIONS_NOT_ACCEPTED: the
// corrections it would send are not those reviewed) is diffed and tried
// again, as an operator would.
func (w *World) StageAndPublish(ctx context.Context, d *Impactd) (uint32, error) {
	v, err := w.Stage(ctx, d)
	if err != nil {
		return 0, err
	}
	for attempt := 1; ; attempt++ {
		op, err := w.publish(ctx, clientPublisher, d, v)
		switch {
		case op.Outcome == OK:
			return v, nil
		case attempt < 5 && errinfo.Of(err).GetReason() == errinfo.CorrectionsNotAccepted:
			continue
		}
		return 0, fmt.Errorf("publish v%d through %s: %s %s", v, d.Name, op.Code, errinfo.Of(err).GetReason())
	}
}

// classify maps a call's error to its outcome: definite says which code
// means the call did nothing.
func classify(err error, definite ...codes.Code) (Outcome, string) {
	if err == nil {
		return OK, ""
	}
	c := status.Code(err)
	if errors.Is(err, context.DeadlineExceeded) {
		c = codes.DeadlineExceeded
	}
	for _, d := range definite {
		if c == d {
			return Failed, c.String()
		}
	}
	return Unknown, c.String()
}

// Read records subject's GetMyStatus through d.
func (w *World) Read(ctx context.Context, client int, d *Impactd, subject string, atLeast uint32) Op {
	op := Op{Client: client, Replica: d.Name, Kind: KindRead, Subject: subject, AtLeast: atLeast, Call: w.Rec.Now()}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	cctx = metadata.AppendToOutgoingContext(cctx, "authorization", "Bearer "+w.tokens[subject])
	r, err := impactv1.NewStatusServiceClient(d.Public).GetMyStatus(cctx, &impactv1.GetMyStatusRequest{IncidentId: Incident, AtLeastVersion: atLeast})
	cancel()
	op.Return = w.Rec.Now()
	op.Outcome, op.Code = classify(err, codes.OutOfRange)
	if a := r.GetAnswer(); err == nil {
		op.Version, op.Pinned, op.NoticeID = a.GetVersion(), a.GetNotifiedVersion(), a.GetNoticeId()
		op.Status, op.VisibleStatus, op.UpdatePending = a.GetStatus().String(), a.GetVisibleStatus().String(), a.GetUpdatePending()
	}
	if ctx.Err() == nil || err == nil {
		w.Rec.Add(op) // a call cut short by the end of the run is not an answer
	}
	return op
}

// Claim records a ClaimNotice for subject through d with key.
func (w *World) Claim(ctx context.Context, client int, d *Impactd, subject, key string) Op {
	op := Op{Client: client, Replica: d.Name, Kind: KindClaim, Subject: subject, Call: w.Rec.Now()}
	cctx, cancel := w.ctx(ctx)
	r, err := impactv1.NewNoticeServiceClient(d.Admin).ClaimNotice(cctx,
		&impactv1.ClaimNoticeRequest{IncidentId: Incident, SubjectId: subject, IdempotencyKey: key})
	cancel()
	op.Return = w.Rec.Now()
	op.Outcome, op.Code = classify(err, codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unauthenticated)
	if c := r.GetClaim(); err == nil {
		op.Action, op.Pinned, op.NoticeID, op.Status = c.GetAction().String(), c.GetVersion(), c.GetNoticeId(), c.GetStatus().String()
	}
	w.Rec.Add(op) // a claim cut short may have happened: it stays, as unknown
	return op
}

// Load is the concurrent traffic of a scenario.
type Load struct {
	Readers  int // patient sessions; even ones pass at_least_version
	Claimers int // notifiers claiming subject after subject
	Replicas []*Impactd
	// ClaimOn, if set, names the replicas claims go through (default:
	// every one of Replicas, as reads).
	ClaimOn []string
	Pause   time.Duration // between one worker's calls
}

// Drive runs the load until ctx ends; the returned function waits for
// every worker to stop.
func (w *World) Drive(ctx context.Context, l Load) (wait func()) {
	var wg sync.WaitGroup
	for c := 0; c < l.Readers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			var high uint32
			for n := 0; ctx.Err() == nil; n++ {
				subject := w.Subjects[rng.IntN(len(w.Subjects))]
				var atLeast uint32
				if c%2 == 0 {
					atLeast = high
				}
				op := w.Read(ctx, c, l.Replicas[n%len(l.Replicas)], subject, atLeast)
				if op.Outcome == OK && op.Version > high {
					high = op.Version
				}
				pause(ctx, l.Pause)
			}
		}()
	}
	var claimOn []*Impactd
	for _, d := range l.Replicas {
		if len(l.ClaimOn) == 0 || slices.Contains(l.ClaimOn, d.Name) {
			claimOn = append(claimOn, d)
		}
	}
	for c := 0; c < l.Claimers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := clientClaimers + c
			for n := 0; ctx.Err() == nil; n++ {
				subject := w.Subjects[(n*l.Claimers+c)%len(w.Subjects)]
				w.Claim(ctx, client, claimOn[(n+c)%len(claimOn)], subject, fmt.Sprintf("chaos-c%d-%d", client, n))
				pause(ctx, l.Pause)
			}
		}()
	}
	return wg.Wait
}

func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// WaitAnswer reads through d until an answer comes (recorded, as a probe)
// or timeout passes, and returns how long it took and the answer. The
// answer's version is the visible one: the harness learns it from there
// after a publish whose outcome it does not know.
func (w *World) WaitAnswer(ctx context.Context, d *Impactd, timeout time.Duration) (time.Duration, Op, error) {
	start := time.Now()
	for {
		op := w.Read(ctx, clientProbe, d, w.Subjects[0], 0)
		if op.Outcome == OK {
			w.mu.Lock()
			w.visible = max(w.visible, op.Version)
			w.mu.Unlock()
			return time.Since(start), op, nil
		}
		if time.Since(start) > timeout {
			return 0, op, fmt.Errorf("%s: no answer within %s (last: %s): %w", d.Name, timeout, op.Code, errTimeout)
		}
		pause(ctx, 20*time.Millisecond)
	}
}

// WaitRecovered waits until d serves again with its store back: an ops
// call that reads the store itself (ListSnapshots: the incident's head and
// versions, which no replica answers from memory) succeeds, and then a
// patient read is answered (WaitAnswer). A patient read alone is no sign
// of recovery: a replica answers it from memory, within its lease, while
// Redis is still down, or while impactd's Redis client still refuses to
// dial (it waits a second between dial attempts after a burst of failed
// ones). It returns how long the wait took.
func (w *World) WaitRecovered(ctx context.Context, d *Impactd, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		cctx, cancel := w.ctx(ctx)
		cctx, cancel2 := context.WithDeadline(cctx, deadline)
		_, err := impactv1.NewSnapshotServiceClient(d.Admin).ListSnapshots(cctx, &impactv1.ListSnapshotsRequest{IncidentId: Incident})
		cancel2()
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: the store did not answer within %s (last: %s): %w", d.Name, timeout, status.Code(err), errTimeout)
		}
		pause(ctx, 20*time.Millisecond)
	}
	if _, _, err := w.WaitAnswer(ctx, d, time.Until(deadline)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// FinalPins reads every subject through d (recorded) and returns the pin
// each answer names, retrying a subject until it is answered (bounded).
func (w *World) FinalPins(ctx context.Context, d *Impactd) (map[string]uint32, error) {
	answers, err := w.Sweep(ctx, d)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint32, len(answers))
	for s, op := range answers {
		out[s] = op.Pinned
	}
	return out, nil
}

// Sweep reads every subject through d (recorded) and returns each answer,
// retrying a subject until it is answered (bounded).
func (w *World) Sweep(ctx context.Context, d *Impactd) (map[string]Op, error) {
	out := map[string]Op{}
	for _, s := range w.Subjects {
		deadline := time.Now().Add(30 * time.Second)
		for {
			op := w.Read(ctx, clientFinal, d, s, 0)
			if op.Outcome == OK {
				out[s] = op
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("read of %s through %s: %s", s, d.Name, op.Code)
			}
			pause(ctx, 50*time.Millisecond)
		}
	}
	return out, nil
}

// AckedPins is, per subject, the newest pin an acknowledged claim in h
// returned.
func AckedPins(h []Op) map[string]Op {
	out := map[string]Op{}
	for _, op := range h {
		if op.Kind == KindClaim && op.Outcome == OK && op.Action != "NONE" && op.Pinned >= out[op.Subject].Pinned {
			out[op.Subject] = op
		}
	}
	return out
}

// LostPins lists the acknowledged claims whose pin the final reads (of
// the subjects in final) no longer show: the final pin is older.
func LostPins(h []Op, final map[string]uint32) []Op {
	var lost []Op
	for s, op := range AckedPins(h) {
		if got, read := final[s]; read && got < op.Pinned {
			lost = append(lost, op)
		}
	}
	return lost
}
