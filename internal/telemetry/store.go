package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/impact-health/impact/internal/store"
)

// InstrumentStore wraps st so that every call is timed
// (impact.store.duration), failed calls are counted by operation and error
// type (impact.store.errors), and calls made inside a trace get a child span
// named "store.<Method>" (store.Read, store.Stager.Put, ...). Calls outside
// any trace (the readiness probe, metric callbacks) get no span of their own,
// so that health checks stay out of traces.
//
// Spans carry the incident id and version, and counts, never a subject key,
// idempotency key, actor or error text. A nil t returns st unchanged.
func InstrumentStore(st store.Store, t *Telemetry) store.Store {
	if t == nil {
		return st
	}
	return &instrumentedStore{
		st:     st,
		tracer: t.TracerProvider().Tracer(ScopeName),
		m:      t.Metrics(),
	}
}

type instrumentedStore struct {
	st     store.Store
	tracer trace.Tracer
	m      *Metrics
}

// call is one store call in progress.
type call struct {
	ctx   context.Context
	op    string
	span  trace.Span // nil outside a trace
	start time.Time
	m     *Metrics
}

func (s *instrumentedStore) begin(ctx context.Context, op string, attrs ...attribute.KeyValue) *call {
	c := &call{ctx: ctx, op: op, start: time.Now(), m: s.m}
	if trace.SpanContextFromContext(ctx).IsValid() {
		c.ctx, c.span = s.tracer.Start(ctx, "store."+op,
			trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	}
	return c
}

// end records the outcome of the call and returns err unchanged.
func (c *call) end(err error, attrs ...attribute.KeyValue) error {
	op := metric.WithAttributes(AttrOperation.String(c.op))
	c.m.storeDuration.Record(c.ctx, time.Since(c.start).Seconds(), op)
	typ := errorType(err)
	if err != nil {
		c.m.storeErrors.Add(c.ctx, 1, metric.WithAttributes(AttrOperation.String(c.op), AttrErrorType.String(typ)))
	}
	if c.span != nil {
		if len(attrs) > 0 {
			c.span.SetAttributes(attrs...)
		}
		if err != nil {
			c.span.SetAttributes(AttrErrorType.String(typ))
			if !expected(typ) {
				// The type only: error texts stay out of traces.
				c.span.SetStatus(codes.Error, typ)
			}
		}
		c.span.End()
	}
	return err
}

func inc(incident string) attribute.KeyValue { return AttrIncident.String(incident) }
func ver(v uint64) attribute.KeyValue        { return AttrVersion.Int64(int64(v)) }

func (s *instrumentedStore) Ping(ctx context.Context) error {
	c := s.begin(ctx, "Ping")
	return c.end(s.st.Ping(c.ctx))
}

func (s *instrumentedStore) Close() error { return s.st.Close() }

func (s *instrumentedStore) Incidents(ctx context.Context) ([]store.Head, error) {
	c := s.begin(ctx, "Incidents")
	hs, err := s.st.Incidents(c.ctx)
	return hs, c.end(err, AttrCount.Int(len(hs)))
}

func (s *instrumentedStore) Head(ctx context.Context, incident string) (store.Head, error) {
	c := s.begin(ctx, "Head", inc(incident))
	h, err := s.st.Head(c.ctx, incident)
	return h, c.end(err, AttrVersion.Int64(int64(h.Visible)))
}

func (s *instrumentedStore) Stage(ctx context.Context, req store.StageRequest) (store.Stager, error) {
	c := s.begin(ctx, "Stage", inc(req.Incident))
	stg, err := s.st.Stage(c.ctx, req)
	if err != nil {
		return nil, c.end(err)
	}
	_ = c.end(nil, ver(stg.Version()))
	return &instrumentedStager{s: s, st: stg, incident: req.Incident}, nil
}

func (s *instrumentedStore) Versions(ctx context.Context, incident string) ([]store.VersionInfo, error) {
	c := s.begin(ctx, "Versions", inc(incident))
	vs, err := s.st.Versions(c.ctx, incident)
	return vs, c.end(err, AttrCount.Int(len(vs)))
}

func (s *instrumentedStore) Version(ctx context.Context, incident string, version uint64) (store.VersionInfo, store.Manifest, error) {
	c := s.begin(ctx, "Version", inc(incident), ver(version))
	info, m, err := s.st.Version(c.ctx, incident, version)
	return info, m, c.end(err)
}

func (s *instrumentedStore) Scan(ctx context.Context, incident string, version uint64, fn func(store.Entry) error) error {
	c := s.begin(ctx, "Scan", inc(incident), ver(version))
	n := 0
	err := s.st.Scan(c.ctx, incident, version, func(e store.Entry) error { n++; return fn(e) })
	return c.end(err, AttrCount.Int(n))
}

func (s *instrumentedStore) Publish(ctx context.Context, req store.PublishRequest) (store.VersionInfo, error) {
	c := s.begin(ctx, "Publish", inc(req.Incident), ver(req.Version))
	info, err := s.st.Publish(c.ctx, req)
	return info, c.end(err)
}

func (s *instrumentedStore) Read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	c := s.begin(ctx, "Read", inc(incident))
	v, err := s.st.Read(c.ctx, incident, key, idem)
	return v, c.end(err, ver(v.Visible))
}

func (s *instrumentedStore) Records(ctx context.Context, incident string, version uint64, keys []store.Key) ([]store.Record, error) {
	c := s.begin(ctx, "Records", inc(incident), ver(version), AttrCount.Int(len(keys)))
	rs, err := s.st.Records(c.ctx, incident, version, keys)
	return rs, c.end(err)
}

func (s *instrumentedStore) ClaimPin(ctx context.Context, incident string, key store.Key, old *store.Pin, next store.Pin, idem store.IdemKey) error {
	c := s.begin(ctx, "ClaimPin", inc(incident), ver(next.Version))
	return c.end(s.st.ClaimPin(c.ctx, incident, key, old, next, idem))
}

func (s *instrumentedStore) Pins(ctx context.Context, incident string, fn func(store.Key, store.Pin) error) error {
	c := s.begin(ctx, "Pins", inc(incident))
	n := 0
	err := s.st.Pins(c.ctx, incident, func(k store.Key, p store.Pin) error { n++; return fn(k, p) })
	return c.end(err, AttrCount.Int(n))
}

// instrumentedStager instruments the calls of one Stager like the store's.
type instrumentedStager struct {
	s        *instrumentedStore
	st       store.Stager
	incident string
}

func (g *instrumentedStager) Version() uint64 { return g.st.Version() }

func (g *instrumentedStager) Put(ctx context.Context, entries []store.Entry) error {
	c := g.s.begin(ctx, "Stager.Put", inc(g.incident), ver(g.st.Version()), AttrCount.Int(len(entries)))
	return c.end(g.st.Put(c.ctx, entries))
}

func (g *instrumentedStager) Commit(ctx context.Context, m store.Manifest, want store.Digest, wantCount uint64) (store.VersionInfo, error) {
	c := g.s.begin(ctx, "Stager.Commit", inc(g.incident), ver(g.st.Version()), AttrCount.Int64(int64(wantCount)))
	info, err := g.st.Commit(c.ctx, m, want, wantCount)
	return info, c.end(err)
}

func (g *instrumentedStager) Abort(ctx context.Context) error {
	c := g.s.begin(ctx, "Stager.Abort", inc(g.incident), ver(g.st.Version()))
	return c.end(g.st.Abort(c.ctx))
}
