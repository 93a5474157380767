// Package instrumented is the store decorator that traces and measures
// every call of a store.Store: each call is timed (impact.store.duration),
// failed calls are counted by operation and error type
// (impact.store.errors), and calls made inside a trace get a child span
// named "store.<Method>" (store.Read, store.Stager.Put, ...). Calls outside
// any trace (the readiness probe, metric callbacks) get no span of their
// own, so that health checks stay out of traces.
//
// Spans carry the incident id and version, and counts, never a subject key,
// idempotency key, actor or error text.
//
// The decorator is transparent: it passes the store conformance suite. It
// imports package telemetry for its instruments and attribute keys;
// telemetry never imports it.
package instrumented

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
)

// New wraps st so that every call is traced and measured with tel's
// tracer provider and metrics. A nil tel returns st unchanged.
func New(st store.Store, tel *telemetry.Telemetry) store.Store {
	if tel == nil {
		return st
	}
	return &Store{
		st:     st,
		tracer: tel.TracerProvider().Tracer(telemetry.ScopeName),
		m:      tel.Metrics(),
	}
}

// Store is an instrumented store.Store.
type Store struct {
	st     store.Store
	tracer trace.Tracer
	m      *telemetry.Metrics
}

var _ store.Store = (*Store)(nil)

// Unwrap returns the store this one decorates.
func (s *Store) Unwrap() store.Store { return s.st }

// call is one store call in progress.
type call struct {
	ctx   context.Context
	op    string
	span  trace.Span // nil outside a trace
	start time.Time
	m     *telemetry.Metrics
}

// begin starts a call (a value, not a pointer: one allocation less on
// every store call).
func (s *Store) begin(ctx context.Context, op string, attrs ...attribute.KeyValue) call {
	c := call{ctx: ctx, op: op, start: time.Now(), m: s.m}
	if trace.SpanContextFromContext(ctx).IsValid() {
		c.ctx, c.span = s.tracer.Start(ctx, spanName(op), clientKind, trace.WithAttributes(attrs...))
	}
	return c
}

// clientKind is the kind of every store span, built once.
var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// spanNames maps an operation to its span name, "store.<op>", so that the
// name is not concatenated on every call. The operations are this
// package's method names: a few dozen, all known at build time.
var spanNames sync.Map // string -> string

func spanName(op string) string {
	if n, ok := spanNames.Load(op); ok {
		return n.(string)
	}
	n, _ := spanNames.LoadOrStore(op, "store."+op)
	return n.(string)
}

// end records the outcome of the call and returns err unchanged.
func (c *call) end(err error, attrs ...attribute.KeyValue) error {
	typ, failed := c.m.StoreCall(c.ctx, c.op, time.Since(c.start), err)
	if c.span != nil {
		if len(attrs) > 0 {
			c.span.SetAttributes(attrs...)
		}
		if err != nil {
			c.span.SetAttributes(telemetry.AttrErrorType.String(typ))
			if failed {
				// The type only: error texts stay out of traces.
				c.span.SetStatus(codes.Error, typ)
			}
		}
		c.span.End()
	}
	return err
}

func incidentAttr(incident string) attribute.KeyValue { return telemetry.AttrIncident.String(incident) }
func versionAttr(v uint64) attribute.KeyValue         { return telemetry.AttrVersion.Int64(int64(v)) }
func countAttr(n int) attribute.KeyValue              { return telemetry.AttrCount.Int(n) }

// Ping is timed and counted like every call.
func (s *Store) Ping(ctx context.Context) error {
	c := s.begin(ctx, "Ping")
	return c.end(s.st.Ping(c.ctx))
}

// Close closes the wrapped store; it is not measured.
func (s *Store) Close() error { return s.st.Close() }
