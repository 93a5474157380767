package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/impact-health/impact/internal/store"
)

// DefaultBatchSize is the number of entries a Service hands to Stager.Put
// at a time.
const DefaultBatchSize = 8192

// Store is what a Service needs of the store: the versions it stages,
// publishes and deletes, the audit trail it records into, the pins that
// retention keeps and the publish review counts, the tombstones a load
// leaves out, the fences a publish counts under and the publish requests
// waiting for approval.
type Store interface {
	store.Versions
	store.Retention
	store.AuditLog
	store.Ledger
	store.Erasure
	store.Fences
	store.PublishRequests
}

// Service stages, lists, compares, publishes and rolls back snapshot
// versions over a store. It is safe for concurrent use.
type Service struct {
	st        Store
	keyer     Keyer
	catalog   *Catalog
	now       func() time.Time
	maxErrors int
	batchSize int
	readRate  *rate.Limiter // nil: unlimited
	pacer     store.Pacer   // nil: never pause (WithPacer)
	// fenceGrace: how long a publish fence outlives the flip (review.go).
	fenceGrace time.Duration
	// approvals a publish needs (the requester's included) and how long a
	// request waits for them (approvals.go).
	approvals   int
	approvalTTL time.Duration
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock that stamps staged and published versions.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithMaxErrors sets how many errors a rejected upload lists (the total is
// always counted). The default is DefaultMaxErrors.
func WithMaxErrors(n int) Option { return func(s *Service) { s.maxErrors = n } }

// WithBatchSize sets how many entries go to the store per Put.
func WithBatchSize(n int) Option { return func(s *Service) { s.batchSize = n } }

// readBurst is the most roster bytes read at once under WithReadRate.
const readBurst = 64 << 10

// WithReadRate caps how fast uploads read their rosters, in bytes per
// second over all uploads of this Service (0: unlimited). Parsing and keying
// a roster takes a core while it runs and its load competes with patient
// reads on the same machine; a cap makes a large publish during a traffic
// spike slower instead of making reads slower. Both passes (validation and
// load) are capped; a demo roster row is about 30 bytes.
func WithReadRate(bytesPerSecond int) Option {
	return func(s *Service) {
		if bytesPerSecond > 0 {
			s.readRate = rate.NewLimiter(rate.Limit(bytesPerSecond), max(bytesPerSecond/10, readBurst))
		}
	}
}

// yieldRead is the most roster bytes read between two yields under
// WithPacer: about 500 rows, half a millisecond to a millisecond of parsing
// and keying.
const yieldRead = 16 << 10

// WithPacer makes uploads and rollbacks give way to patient reads: they
// yield to p (a *pace.Pacer) every yieldRead bytes of roster parsed, in
// both passes, every 32k keys of the duplicate check's merge, before each
// batch a rollback copies, and the stager between its own units of work
// (store.StageRequest.Pacer). Yield returns at once on an idle server and
// pauses while reads are in flight. A nil p never pauses.
func WithPacer(p store.Pacer) Option {
	return func(s *Service) { s.pacer = p }
}

// yield yields to the pacer, if any.
func (s *Service) yield(ctx context.Context) error {
	if s.pacer == nil {
		return ctx.Err()
	}
	return s.pacer.Yield(ctx)
}

// WithCatalog shares a Catalog (for example with the read path) instead of
// a private one.
func WithCatalog(c *Catalog) Option { return func(s *Service) { s.catalog = c } }

// NewService returns a Service over st, keying subjects with keyer.
func NewService(st Store, keyer Keyer, opts ...Option) *Service {
	s := &Service{st: st, keyer: keyer, now: time.Now, maxErrors: DefaultMaxErrors, batchSize: DefaultBatchSize, fenceGrace: DefaultFenceGrace,
		approvals: 1, approvalTTL: DefaultApprovalTTL}
	for _, o := range opts {
		o(s)
	}
	if s.catalog == nil {
		s.catalog = NewCatalog(st, 0)
	}
	if s.batchSize <= 0 {
		s.batchSize = DefaultBatchSize
	}
	return s
}

// Catalog returns the Catalog the Service reads versions through.
func (s *Service) Catalog() *Catalog { return s.catalog }

// UploadRequest is a new snapshot: an incident spec and a roster CSV.
type UploadRequest struct {
	// Incident must equal the spec's incident.id.
	Incident string
	// Spec is the incident spec, YAML or JSON.
	Spec []byte
	// Roster opens the roster CSV. It is called twice (validate, then load)
	// and must return the same content both times.
	Roster func() (io.ReadCloser, error)
	// Actor is who uploads (the token subject of the operator).
	Actor string
}

// Upload validates and stages a new version. The spec and the whole roster
// are validated first: if anything is invalid it returns a
// *ValidationError and stages nothing (no version number is used). Then it
// stages a version, loads the roster into it in batches and commits it with
// the digest and count computed while validating; the store verifies them
// against what it holds. If the roster read the second time differs from
// the first, or loading fails, the version is aborted and the error
// returned.
//
// Rows of subjects whose accounts were closed (erasure.Service.Erase) are
// dropped while loading: the version holds the rest, with their digest and
// count, and the audit event says how many rows were dropped (never whose).
//
// The upload is recorded in the audit trail (store.AuditUpload), staged or
// not.
func (s *Service) Upload(ctx context.Context, req UploadRequest) (store.VersionInfo, error) {
	ev := store.AuditEvent{Action: store.AuditUpload, Incident: req.Incident, Actor: req.Actor}
	var dropped uint64
	info, err := s.upload(ctx, req, &ev, &dropped)
	if err == nil {
		ev.Version, ev.Digest = info.Version, info.Digest
		ev.Detail = "staged: " + countsDetail(info.Counts)
		if dropped > 0 {
			ev.Detail += fmt.Sprintf("; %d rows of closed accounts dropped", dropped)
		}
	} else {
		var ve *ValidationError
		switch {
		case errors.As(err, &ve):
			ev.Detail = fmt.Sprintf("rejected: %s, %d errors", ve.Input, ve.Total)
		case ev.Version != 0:
			ev.Detail = fmt.Sprintf("v%d aborted", ev.Version)
		}
	}
	return info, s.record(ctx, ev, err)
}

// upload is Upload; it sets ev.Version once a version is allocated, and
// dropped to the number of rows of closed accounts it left out.
func (s *Service) upload(ctx context.Context, req UploadRequest, ev *store.AuditEvent, dropped *uint64) (store.VersionInfo, error) {
	spec, err := ParseSpec(req.Spec)
	if err != nil {
		return store.VersionInfo{}, err
	}
	if spec.Incident.ID != req.Incident {
		return store.VersionInfo{}, specError("incident.id", "must equal the incident the upload is for")
	}
	if req.Roster == nil {
		return store.VersionInfo{}, errors.New("upload: no roster")
	}
	parser := RosterParser{Spec: spec, Keyer: s.keyer, MaxErrors: s.maxErrors}
	if s.pacer != nil {
		parser.pause = func() error { return s.yield(ctx) }
	}

	// Pass 1: validate everything, stage nothing.
	first, err := s.parseOpened(ctx, req.Roster, parser, nil)
	if err != nil {
		return store.VersionInfo{}, err
	}
	// Pass 2: load.
	stager, err := s.st.Stage(ctx, store.StageRequest{
		Incident: req.Incident, CreatedBy: req.Actor, Source: "upload", At: s.now(), Pacer: s.pacer,
	})
	if err != nil {
		return store.VersionInfo{}, fmt.Errorf("stage %s: %w", req.Incident, err)
	}
	ev.Version = stager.Version()
	info, err := func() (store.VersionInfo, error) {
		batch := make([]store.Entry, 0, s.batchSize)
		// Subjects whose accounts were closed are dropped; the version's
		// digest and count are those of what is kept.
		kept := newErasedFilter(s.st, first.Practices, len(spec.Cohorts))
		flush := func() error {
			err := kept.put(ctx, stager, batch)
			batch = batch[:0]
			return err
		}
		loader := parser
		loader.validated = true // no second duplicate check: the digests are compared below
		second, err := s.parseOpened(ctx, req.Roster, loader, func(e store.Entry) error {
			batch = append(batch, e)
			if len(batch) == cap(batch) {
				return flush()
			}
			return nil
		})
		if err != nil {
			return store.VersionInfo{}, fmt.Errorf("load %s v%d: %w", req.Incident, stager.Version(), err)
		}
		if err := flush(); err != nil {
			return store.VersionInfo{}, fmt.Errorf("load %s v%d: %w", req.Incident, stager.Version(), err)
		}
		if second.Digest != first.Digest || second.Entries != first.Entries {
			return store.VersionInfo{}, fmt.Errorf("%w: the roster changed between validation and load", store.ErrVerify)
		}
		*dropped = kept.dropped
		m := store.Manifest{Spec: spec.Canonical(), Cohorts: len(spec.Cohorts), Practices: second.Practices,
			PracticeCounts: kept.perPractice.Counts()}
		info, err := stager.Commit(ctx, m, kept.kept.Sum(m.Spec), kept.kept.Count())
		if err != nil {
			return store.VersionInfo{}, fmt.Errorf("commit %s v%d: %w", req.Incident, stager.Version(), err)
		}
		return info, nil
	}()
	if err != nil {
		return store.VersionInfo{}, abort(ctx, stager, err)
	}
	return info, nil
}

// parseOpened opens the roster, parses it and closes it. Reads fail once
// ctx ends, so that an abandoned upload stops early, and are paced by the
// read rate and the yield.
func (s *Service) parseOpened(ctx context.Context, open func() (io.ReadCloser, error), p RosterParser, emit func(store.Entry) error) (*Roster, error) {
	rc, err := open()
	if err != nil {
		return nil, fmt.Errorf("open roster: %w", err)
	}
	var yield func(context.Context) error
	if s.pacer != nil {
		yield = s.pacer.Yield
	}
	r, err := p.Parse(ctxReader{ctx, rc, s.readRate, yield}, emit)
	if cerr := rc.Close(); err == nil && cerr != nil {
		return nil, fmt.Errorf("close roster: %w", cerr)
	}
	return r, err
}

// ctxReader is a reader that fails once its context ends and, with a
// limiter, reads no faster than it allows; with a yield, it yields before
// each read of at most yieldRead bytes.
type ctxReader struct {
	ctx   context.Context
	r     io.Reader
	lim   *rate.Limiter
	yield func(context.Context) error
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if c.yield != nil {
		if err := c.yield(c.ctx); err != nil {
			return 0, err
		}
		if len(p) > yieldRead {
			p = p[:yieldRead]
		}
	}
	if c.lim == nil {
		return c.r.Read(p)
	}
	if len(p) > c.lim.Burst() {
		p = p[:c.lim.Burst()]
	}
	n, err := c.r.Read(p)
	if n > 0 {
		if werr := c.lim.WaitN(c.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// abort aborts a stager after err, even if ctx has ended.
func abort(ctx context.Context, st store.Stager, err error) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if aerr := st.Abort(actx); aerr != nil {
		return errors.Join(err, fmt.Errorf("abort v%d: %w", st.Version(), aerr))
	}
	return err
}

// List returns an incident's head and its versions, newest first.
func (s *Service) List(ctx context.Context, incident string) (store.Head, []store.VersionInfo, error) {
	head, err := s.st.Head(ctx, incident)
	if err != nil {
		return store.Head{}, nil, versionError("list", incident, 0, err)
	}
	versions, err := s.st.Versions(ctx, incident)
	if err != nil {
		return store.Head{}, nil, versionError("list", incident, 0, err)
	}
	slices.Reverse(versions)
	return head, versions, nil
}

// Publish makes a staged version visible if the visible version is
// expectVisible (a VersionError of kind ErrStaleVisible if not, of kind
// ErrNotAfterVisible if version is not newer; both wrap store.ErrConflict), and
// returns its info and the previously visible version. It accepts no
// correction: see PublishReviewed, which it is with AcceptCorrections 0.
// The attempt is recorded in the audit trail (store.AuditPublish), with its
// outcome.
func (s *Service) Publish(ctx context.Context, incident string, version, expectVisible uint64, actor string) (store.VersionInfo, uint64, error) {
	return s.PublishReviewed(ctx, PublishRequest{Incident: incident, Version: version, ExpectVisible: expectVisible, Actor: actor})
}

// Rollback stages a new version with the content of version to (spec,
// practices and entries: the same digest) and publishes it if the visible
// version is expectVisible. It accepts no correction: see RollbackReviewed,
// which it is with AcceptCorrections 0.
func (s *Service) Rollback(ctx context.Context, incident string, to, expectVisible uint64, actor string) (store.VersionInfo, uint64, error) {
	return s.RollbackReviewed(ctx, RollbackRequest{Incident: incident, To: to, ExpectVisible: expectVisible, Actor: actor})
}

// RollbackReviewed stages a new version with the content of version req.To
// (spec, practices and entries: the same digest) and publishes it if the
// visible version is req.ExpectVisible and it corrects no more notified
// subjects than req.AcceptCorrections (counted against To's content before
// the copy is staged, and again, under the publish fence, when the copy is
// published). Only a staged or published version can be copied
// (store.ErrNotStaged otherwise). The visible version number only moves
// forward: the copy gets a new, higher number. If the publish fails the
// copy stays staged and the error names it.
//
// The attempt is recorded in the audit trail (store.AuditRollback, or
// store.AuditPublishRefused for too many corrections), with its outcome.
func (s *Service) RollbackReviewed(ctx context.Context, req RollbackRequest) (store.VersionInfo, uint64, error) {
	info, nc, err := s.rollback(ctx, req, true)
	ev := store.AuditEvent{Action: store.AuditRollback, Actor: req.Actor, Incident: req.Incident, Version: info.Version, Digest: info.Digest,
		Detail: fmt.Sprintf("content of v%d; visible v%d -> v%d", req.To, req.ExpectVisible, info.Version) + correctionsDetail(nc, req.AcceptCorrections)}
	if err != nil {
		ev.Detail = fmt.Sprintf("to the content of v%d, expected visible v%d", req.To, req.ExpectVisible) + correctionsDetail(nc, req.AcceptCorrections)
		var ce *CorrectionsError
		if errors.As(err, &ce) {
			ev.Action, ev.Version = store.AuditPublishRefused, ce.Version
		}
	}
	return info, req.ExpectVisible, s.record(ctx, ev, err)
}

// rollback stages the copy and, with publish, publishes it (checked);
// without, it stops once the copy is staged (a publish request is made for
// it instead).
func (s *Service) rollback(ctx context.Context, req RollbackRequest, publish bool) (store.VersionInfo, *NotifiedChanges, error) {
	incident, to, expectVisible, actor := req.Incident, req.To, req.ExpectVisible, req.Actor
	src, err := s.catalog.Get(ctx, incident, to)
	if err != nil {
		return store.VersionInfo{}, nil, versionError("rollback", incident, to, err)
	}
	if st := src.Info.State; st != store.StateStaged && st != store.StatePublished {
		return store.VersionInfo{}, nil, &VersionError{Kind: store.ErrNotStaged, Incident: incident, Version: to, State: st}
	}
	// Fail early on a stale expectation, or on more corrections than
	// accepted, rather than stage a copy for nothing; the publish below
	// still counts and compares and sets.
	head, err := s.st.Head(ctx, incident)
	if err != nil {
		return store.VersionInfo{}, nil, versionError("rollback", incident, 0, err)
	}
	if head.Visible != expectVisible {
		return store.VersionInfo{}, nil, &VersionError{Kind: ErrStaleVisible, Incident: incident, Version: to,
			Expected: expectVisible, Visible: head.Visible}
	}
	pre, err := s.countCorrections(ctx, src, nil)
	if err != nil {
		return store.VersionInfo{}, nil, fmt.Errorf("rollback %s: count corrections: %w", incident, err)
	}
	if pre.Total > req.AcceptCorrections {
		return store.VersionInfo{}, pre, &CorrectionsError{Incident: incident, Version: to, ExpectVisible: expectVisible, Count: pre.Total, Accepted: req.AcceptCorrections}
	}
	stager, err := s.st.Stage(ctx, store.StageRequest{
		Incident: incident, CreatedBy: actor, Source: fmt.Sprintf("rollback of v%d", to), At: s.now(), Pacer: s.pacer,
	})
	if err != nil {
		return store.VersionInfo{}, pre, fmt.Errorf("stage %s: %w", incident, err)
	}
	staged, err := s.copyVersion(ctx, src, stager)
	if err != nil {
		return store.VersionInfo{}, pre, abort(ctx, stager, err)
	}
	if !publish {
		return staged, pre, nil
	}
	info, nc, err := s.checkedPublish(ctx, PublishRequest{Incident: incident, Version: staged.Version, ExpectVisible: expectVisible, AcceptCorrections: req.AcceptCorrections, Actor: actor})
	if nc == nil {
		nc = pre
	}
	if err != nil {
		return store.VersionInfo{}, nc, fmt.Errorf("rollback copy v%d is staged but not published: %w", staged.Version, err)
	}
	return info, nc, nil
}

// copyVersion loads src's entries into stager and commits it with src's
// manifest, digest and count; entries of closed accounts are left out (and
// the digest and count are then those of what was copied).
func (s *Service) copyVersion(ctx context.Context, src *Version, stager store.Stager) (store.VersionInfo, error) {
	batch := make([]store.Entry, 0, s.batchSize)
	kept := newErasedFilter(s.st, src.Manifest.Practices, src.Manifest.Cohorts)
	err := s.st.Scan(ctx, src.Info.Incident, src.Info.Version, func(e store.Entry) error {
		batch = append(batch, e)
		if len(batch) < cap(batch) {
			return nil
		}
		if err := s.yield(ctx); err != nil {
			return err
		}
		err := kept.put(ctx, stager, batch)
		batch = batch[:0]
		return err
	})
	if err == nil {
		err = kept.put(ctx, stager, batch)
	}
	if err != nil {
		return store.VersionInfo{}, fmt.Errorf("copy %s v%d into v%d: %w", src.Info.Incident, src.Info.Version, stager.Version(), err)
	}
	digest, count := src.Info.Digest, src.Info.Counts.Entries
	if kept.dropped > 0 {
		// Closed accounts are not copied back.
		digest, count = kept.kept.Sum(src.Manifest.Spec), kept.kept.Count()
	}
	m := src.Manifest
	m.PracticeCounts = kept.perPractice.Counts() // of what was copied
	info, err := stager.Commit(ctx, m, digest, count)
	if err != nil {
		return store.VersionInfo{}, fmt.Errorf("commit %s v%d: %w", src.Info.Incident, stager.Version(), err)
	}
	return info, nil
}

// Diff compares version with against (against 0: an empty roster before
// the first version) in one merge join of the two versions' scans. Both
// versions must be staged or published (store.ErrNotStaged otherwise).
func (s *Service) Diff(ctx context.Context, incident string, version, against uint64) (*Diff, error) {
	a, err := s.readable(ctx, incident, version)
	if err != nil {
		return nil, err
	}
	var b *Version
	if against != 0 {
		if b, err = s.readable(ctx, incident, against); err != nil {
			return nil, err
		}
	}
	d, err := diff(ctx, s.st, a, b)
	if err != nil {
		return nil, fmt.Errorf("diff %s v%d against v%d: %w", incident, version, against, err)
	}
	return d, nil
}

func (s *Service) readable(ctx context.Context, incident string, version uint64) (*Version, error) {
	v, err := s.catalog.Get(ctx, incident, version)
	if err != nil {
		return nil, versionError("diff", incident, version, err)
	}
	if st := v.Info.State; st != store.StateStaged && st != store.StatePublished {
		return nil, &VersionError{Kind: store.ErrNotStaged, Incident: incident, Version: version, State: st}
	}
	return v, nil
}
