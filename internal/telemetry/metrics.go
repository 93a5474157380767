package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/impact-health/impact/internal/store"
)

// Metric names (OpenTelemetry; the Prometheus exporter turns dots into
// underscores and adds unit and _total suffixes, e.g.
// impact_status_answers_total, impact_snapshot_publish_duration_seconds).
const (
	MetricAnswers         = "impact.status.answers"            // counter: incident, status, update_pending
	MetricClaims          = "impact.notice.claims"             // counter: incident, action
	MetricPublishDuration = "impact.snapshot.publish.duration" // histogram (s): incident, outcome
	MetricPublishEntries  = "impact.snapshot.publish.entries"  // histogram: incident
	MetricVisibleVersion  = "impact.incident.visible_version"  // gauge: incident
	MetricCatalogLookups  = "impact.catalog.lookups"           // counter: result (hit, miss)
	MetricStoreDuration   = "impact.store.duration"            // histogram (s): operation
	MetricStoreErrors     = "impact.store.errors"              // counter: operation, error.type
	MetricReplicaServing  = "impact.replica.serving"           // gauge: 1 while answering from memory
	MetricReplicaLag      = "impact.replica.lag"               // gauge: changes not yet applied
	MetricReplicaMemory   = "impact.replica.memory"            // gauge (By): records held in memory
	MetricReplicaPins     = "impact.replica.pins"              // gauge: pins held in memory
	MetricReplicaWaits    = "impact.replica.write_waits"       // counter: writes that waited for the replicas
	MetricReplicaWaitTime = "impact.replica.write_wait_time"   // counter (s): their total wait
)

// Attribute keys of Impact's metrics and spans. None of them ever holds a
// subject id, token, idempotency key, email address or notice text.
const (
	AttrIncident      = attribute.Key("impact.incident")
	AttrVersion       = attribute.Key("impact.version")
	AttrStatus        = attribute.Key("status")
	AttrUpdatePending = attribute.Key("update_pending")
	AttrAction        = attribute.Key("action")
	AttrOutcome       = attribute.Key("outcome")
	AttrResult        = attribute.Key("result")
	AttrOperation     = attribute.Key("operation")
	AttrErrorType     = attribute.Key("error.type")
	AttrCount         = attribute.Key("impact.count")
)

// Metrics are Impact's own instruments. The methods of a nil *Metrics do
// nothing, so callers need not check whether telemetry is on.
type Metrics struct {
	meter           metric.Meter
	answers         metric.Int64Counter
	claims          metric.Int64Counter
	publishDuration metric.Float64Histogram
	publishEntries  metric.Int64Histogram
	storeDuration   metric.Float64Histogram
	storeErrors     metric.Int64Counter

	// The attribute sets of the per-read measurements, built once per
	// value instead of on every read (attribute.NewSet sorts and
	// allocates): answer attributes by answerAttrs, store-call duration
	// attributes by operation.
	answerOpts optionCache[answerAttrs, metric.AddOption]
	storeOpts  optionCache[string, metric.RecordOption]
}

// answerAttrs are the attributes of one impact.status.answers count.
type answerAttrs struct {
	incident      string
	status        store.Status
	updatePending bool
}

// maxCachedOptions bounds each optionCache. The keys are the incidents
// served times three statuses times two, and the store's operations, so
// the bound is never reached in practice; past it, options are built per
// call as before.
const maxCachedOptions = 4096

// optionCache holds, per attribute value, the one-element option slice a
// measurement passes to the SDK (an attribute.Set is immutable and safe to
// share). Reads take no lock and allocate nothing: the map is replaced,
// never changed, when a key is added (rare: the keys are few). It is safe
// for concurrent use.
type optionCache[K comparable, O any] struct {
	mu sync.Mutex // serialises additions
	m  atomic.Pointer[map[K][]O]
}

// get returns the options of k, building them with build on first use.
func (c *optionCache[K, O]) get(k K, build func() O) []O {
	if m := c.m.Load(); m != nil {
		if opts, ok := (*m)[k]; ok {
			return opts
		}
	}
	opts := []O{build()}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if cached, ok := (*old)[k]; ok {
			return cached
		}
		if len(*old) >= maxCachedOptions {
			return opts
		}
	}
	next := make(map[K][]O, 1+lenOf(old))
	if old != nil {
		for kk, v := range *old {
			next[kk] = v
		}
	}
	next[k] = opts
	c.m.Store(&next)
	return opts
}

func lenOf[K comparable, V any](m *map[K]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

func newMetrics(m metric.Meter) (*Metrics, error) {
	var errs [6]error
	x := &Metrics{meter: m}
	x.answers, errs[0] = m.Int64Counter(MetricAnswers, metric.WithUnit("{answer}"),
		metric.WithDescription("Status answers given to patients, by incident, status and whether an update is pending."))
	x.claims, errs[1] = m.Int64Counter(MetricClaims, metric.WithUnit("{claim}"),
		metric.WithDescription("Notice claims answered, by incident and action (send, already_sent, none)."))
	x.publishDuration, errs[2] = m.Float64Histogram(MetricPublishDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of snapshot publishes and rollbacks, by incident and outcome."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	x.publishEntries, errs[3] = m.Int64Histogram(MetricPublishEntries, metric.WithUnit("{entry}"),
		metric.WithDescription("Roster entries of the snapshot versions published, by incident."),
		metric.WithExplicitBucketBoundaries(100, 1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 5e6, 1e7))
	x.storeDuration, errs[4] = m.Float64Histogram(MetricStoreDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of store calls, by operation."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	x.storeErrors, errs[5] = m.Int64Counter(MetricStoreErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Store calls that returned an error, by operation and error type."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	return x, nil
}

// Answer counts one status answer given to a patient.
func (m *Metrics) Answer(ctx context.Context, incident string, status store.Status, updatePending bool) {
	if m == nil {
		return
	}
	opts := m.answerOpts.get(answerAttrs{incident, status, updatePending}, func() metric.AddOption {
		return metric.WithAttributeSet(attribute.NewSet(
			AttrIncident.String(incident), AttrStatus.String(status.String()), AttrUpdatePending.Bool(updatePending)))
	})
	m.answers.Add(ctx, 1, opts...)
}

// Claim counts one notice claim by its action ("send", "already_sent",
// "none").
func (m *Metrics) Claim(ctx context.Context, incident, action string) {
	if m == nil {
		return
	}
	m.claims.Add(ctx, 1, metric.WithAttributes(AttrIncident.String(incident), AttrAction.String(action)))
}

// Publish records one publish (or rollback) of an incident: its duration,
// and on success the number of entries of the version made visible.
func (m *Metrics) Publish(ctx context.Context, incident string, d time.Duration, entries uint64, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = errorType(err)
	}
	m.publishDuration.Record(ctx, d.Seconds(), metric.WithAttributes(AttrIncident.String(incident), AttrOutcome.String(outcome)))
	if err == nil {
		m.publishEntries.Record(ctx, int64(entries), metric.WithAttributes(AttrIncident.String(incident)))
	}
}

// StoreCall records one store call of operation op that took d: its
// duration (impact.store.duration), and when err is not nil one error of
// its type (impact.store.errors). It returns err's type ("" for nil) and
// whether that type is a failure rather than a normal outcome of a call (a
// lost compare-and-set, an unknown incident). The instrumented store
// decorator (package store/instrumented) calls it for every call.
func (m *Metrics) StoreCall(ctx context.Context, op string, d time.Duration, err error) (errType string, failed bool) {
	errType = errorType(err)
	failed = err != nil && !expected(errType)
	if m == nil {
		return errType, failed
	}
	opts := m.storeOpts.get(op, func() metric.RecordOption {
		return metric.WithAttributeSet(attribute.NewSet(AttrOperation.String(op)))
	})
	m.storeDuration.Record(ctx, d.Seconds(), opts...)
	if err != nil {
		m.storeErrors.Add(ctx, 1, metric.WithAttributes(AttrOperation.String(op), AttrErrorType.String(errType)))
	}
	return errType, failed
}

// ObserveIncidents reports each incident's visible version as the gauge
// impact.incident.visible_version, read from st.Incidents at every
// collection. Call the returned function to stop.
func (m *Metrics) ObserveIncidents(st store.Heads) (func() error, error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	g, err := m.meter.Int64ObservableGauge(MetricVisibleVersion, metric.WithUnit("{version}"),
		metric.WithDescription("The visible snapshot version of each incident served (0: none published)."))
	if err != nil {
		return nil, err
	}
	reg, err := m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		heads, err := st.Incidents(ctx)
		if err != nil {
			return nil // counted as a store error; report nothing rather than a stale value
		}
		for _, h := range heads {
			o.ObserveInt64(g, int64(h.Visible), metric.WithAttributes(AttrIncident.String(h.Incident)))
		}
		return nil
	}, g)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}

// CacheStats is a cache that counts its hits and misses
// (snapshot.Catalog).
type CacheStats interface {
	Stats() (hits, misses uint64)
}

// ObserveCatalog reports a cache's lookups as the counter
// impact.catalog.lookups with result "hit" or "miss" (the hit ratio is
// hits / (hits + misses)). Call the returned function to stop.
func (m *Metrics) ObserveCatalog(c CacheStats) (func() error, error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	ctr, err := m.meter.Int64ObservableCounter(MetricCatalogLookups, metric.WithUnit("{lookup}"),
		metric.WithDescription("Snapshot version lookups, answered from memory (hit) or loaded from the store (miss)."))
	if err != nil {
		return nil, err
	}
	hit := metric.WithAttributes(AttrResult.String("hit"))
	miss := metric.WithAttributes(AttrResult.String("miss"))
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		h, ms := c.Stats()
		o.ObserveInt64(ctr, int64(h), hit)
		o.ObserveInt64(ctr, int64(ms), miss)
		return nil
	}, ctr)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}

// ReplicaStatus is what ObserveReplica reports (package store/replica).
type ReplicaStatus struct {
	Serving     bool
	Lag         uint64
	MemoryBytes int
	Pins        int
	Waits       uint64
	WaitTime    time.Duration
}

// ObserveReplica reports a replica answering from memory: whether it
// serves, its lag behind the change stream, the memory its records take,
// its pins, and the writes that waited for the replicas. Call the returned
// function to stop.
func (m *Metrics) ObserveReplica(status func() ReplicaStatus) (func() error, error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	var (
		errs                   [6]error
		serving, lag, mem, pin metric.Int64ObservableGauge
		waits                  metric.Int64ObservableCounter
		waitTime               metric.Float64ObservableCounter
	)
	serving, errs[0] = m.meter.Int64ObservableGauge(MetricReplicaServing,
		metric.WithDescription("1 while this replica answers patient reads from memory under a valid lease, 0 while they go to the store."))
	lag, errs[1] = m.meter.Int64ObservableGauge(MetricReplicaLag, metric.WithUnit("{change}"),
		metric.WithDescription("Changes of the change stream this replica has not applied yet."))
	mem, errs[2] = m.meter.Int64ObservableGauge(MetricReplicaMemory, metric.WithUnit("By"),
		metric.WithDescription("Memory taken by the snapshot records this replica holds (visible versions and versions loaded ahead)."))
	pin, errs[3] = m.meter.Int64ObservableGauge(MetricReplicaPins, metric.WithUnit("{pin}"),
		metric.WithDescription("Notification pins this replica holds in memory."))
	waits, errs[4] = m.meter.Int64ObservableCounter(MetricReplicaWaits, metric.WithUnit("{write}"),
		metric.WithDescription("Writes (claims, publishes, closures) that waited for every serving replica to apply them."))
	waitTime, errs[5] = m.meter.Float64ObservableCounter(MetricReplicaWaitTime, metric.WithUnit("s"),
		metric.WithDescription("Total time writes waited for the replicas (divide by write_waits for the mean)."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := status()
		on := int64(0)
		if st.Serving {
			on = 1
		}
		o.ObserveInt64(serving, on)
		o.ObserveInt64(lag, int64(st.Lag))
		o.ObserveInt64(mem, int64(st.MemoryBytes))
		o.ObserveInt64(pin, int64(st.Pins))
		o.ObserveInt64(waits, int64(st.Waits))
		o.ObserveFloat64(waitTime, st.WaitTime.Seconds())
		return nil
	}, serving, lag, mem, pin, waits, waitTime)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}

// errorType classifies an error by the store's sentinel errors, without
// its text (which is never put in telemetry).
func errorType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, store.ErrNotStaged):
		return "not_staged"
	case errors.Is(err, store.ErrVerify):
		return "verify"
	case errors.Is(err, store.ErrPinned):
		return "pinned"
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return "other"
}

// expected reports whether an error type is a normal outcome of a call
// (a lost compare-and-set, an unknown incident) rather than a failure.
func expected(typ string) bool {
	switch typ {
	case "not_found", "conflict", "not_staged", "pinned", "canceled":
		return true
	}
	return false
}
