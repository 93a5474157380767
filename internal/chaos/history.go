// Package chaos is the fault harness: it starts real impactd replicas,
// redis-server and redis-sentinel processes, drives claims, reads and
// publishes against them while it injects faults (SIGKILL, failover,
// latency and connection resets through its own TCP proxy), records every
// operation with its call and return times, replica and answer, and checks
// the history with Porcupine and with the content checks in check.go.
//
// The guarantee checked is the one the replicas' lease protocol gives
// (internal/store/replica): writes take effect in one order in Redis; a
// read answers a value some write made (whose call began before the read
// returned); and no read that starts after a write's acknowledgement, on
// any replica, misses it. Reads are not linearizable while a write is in
// flight: each replica applies the change when its tail reads it, so a
// read on one replica may answer the new value and a later read on
// another the old one, until the writer is acknowledged, which waits for
// every serving replica. The models in check.go encode exactly this.
//
// Subjects in a history are the harness's own synthetic ids ("chaos-0001");
// nothing the harness prints names a real patient.
package chaos

import (
	"sort"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind uint8

const (
	// KindClaim is a ClaimNotice call (the notifier before an email).
	KindClaim Kind = iota + 1
	// KindRead is a GetMyStatus call by the subject.
	KindRead
	// KindPublish is a PublishSnapshot compare-and-set.
	KindPublish
)

func (k Kind) String() string {
	switch k {
	case KindClaim:
		return "claim"
	case KindRead:
		return "read"
	case KindPublish:
		return "publish"
	}
	return "?"
}

// Outcome says whether an operation took effect.
type Outcome uint8

const (
	// OK: the call returned an answer.
	OK Outcome = iota + 1
	// Failed: the call returned an error that says it did nothing
	// (FAILED_PRECONDITION of a publish compare-and-set, OUT_OF_RANGE of a
	// read ahead of the newest version).
	Failed
	// Unknown: the call failed in a way that leaves its effect unknown
	// (UNAVAILABLE, deadline, a connection reset): a claim or publish may or
	// may not have happened, and the checker considers both.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	}
	return "?"
}

// Op is one recorded operation.
type Op struct {
	Client  int    // the recording goroutine (a reader session, a notifier)
	Replica string // the impactd that served it
	Kind    Kind
	Subject string // claims and reads

	Call, Return time.Duration // since the recorder started

	// Inputs.
	AtLeast uint32 // read: at_least_version sent (0: none)
	Publish uint32 // publish: the version to make visible
	Expect  uint32 // publish: the visible version expected

	// Result.
	Outcome Outcome
	Code    string // gRPC code name when the call failed

	// Answers.
	Action        string // claim: SEND, ALREADY_SENT, NONE
	Pinned        uint32 // claim: its version; read: notified_version
	NoticeID      string // claim and read
	Status        string // claim and read: AFFECTED, UNDER_REVIEW, NOT_AFFECTED
	Version       uint32 // read: the visible version it was read at
	VisibleStatus string // read
	UpdatePending bool   // read
}

// Recorder collects operations from many goroutines.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder starts the recorder's clock.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the time since the recorder started (monotonic clock).
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// Add records a finished operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// History returns the operations recorded so far, by call time.
func (r *Recorder) History() []Op {
	r.mu.Lock()
	out := append([]Op(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}
