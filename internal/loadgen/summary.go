package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured: the text block `make load`
// prints (Text) and its --json form.
type Report struct {
	Args      []string `json:"args"`    // impact-load's command line
	Started   string   `json:"started"` // UTC, RFC 3339
	Finished  string   `json:"finished"`
	CPUs      int      `json:"cpus"`
	GoVersion string   `json:"go_version"`
	LoadStart string   `json:"load_average_start"` // /proc/loadavg: 1, 5, 15 min
	LoadEnd   string   `json:"load_average_end"`
	Settings  Settings `json:"settings"`
	// ImpactdFlags are the flags impactd ran with, from its command line,
	// without listener addresses, directories and --redis-url.
	ImpactdFlags []string `json:"impactd_flags"`
	AppendFsync  string   `json:"redis_appendfsync"`

	Targets []TargetRow  `json:"targets"`
	Ghz     *GhzRow      `json:"ghz,omitempty"`
	GhzNote string       `json:"ghz_note,omitempty"`
	Ratios  []RatioRow   `json:"ratios"`
	Publish []PublishRow `json:"publish,omitempty"`
	// PublishRetries are the publishes that came back UNAVAILABLE and
	// were tried again (version, attempt, the error's message).
	PublishRetries []string      `json:"publish_retries,omitempty"`
	RSS            *RSSReport    `json:"rss,omitempty"`
	Claims         *ClaimsReport `json:"claims,omitempty"`
}

// Settings are the run's sizes.
type Settings struct {
	Rows        int     `json:"rows"`
	PublishRows int     `json:"publish_rows"`
	Tokens      int     `json:"tokens"`
	InRoster    int     `json:"token_subjects_in_roster"`
	Notified    int     `json:"token_subjects_notified"`
	Concurrency int     `json:"concurrency"`
	Conns       int     `json:"grpc_conns"`
	DurationS   float64 `json:"duration_s"` // per target, over all rounds
	WarmupS     float64 `json:"warmup_s"`
	Rounds      int     `json:"rounds"`
}

// TargetRow is one target of the side-by-side comparison.
type TargetRow struct {
	Name        string  `json:"name"`
	Protocol    string  `json:"protocol"` // grpc or rest
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	ServerCores float64 `json:"server_cores"`
	RedisCores  float64 `json:"redis_cores"`
	GenCores    float64 `json:"generator_cores"`
	ServerUs    float64 `json:"server_us_per_req"`
	RedisUs     float64 `json:"redis_us_per_req"`
	// AllocsPerReq is the server process's heap allocations over the
	// target's requests (nil: not measured).
	AllocsPerReq *float64 `json:"allocs_per_req,omitempty"`
	// Ratio is RPS over the minimal server of the same protocol.
	Ratio float64 `json:"ratio"`
}

// GhzRow is ghz's run against the minimal gRPC server.
type GhzRow struct {
	Version  string  `json:"version"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
}

// RatioRow is one ratio of req/s, with its target when it has one.
type RatioRow struct {
	Name   string   `json:"name"`
	Value  float64  `json:"value"`
	Target *float64 `json:"target,omitempty"` // at least
	Met    *bool    `json:"met,omitempty"`
	// CPUBound is the ratio of CPU per request (server + Redis +
	// generator): the ratio on cores this run had to itself.
	CPUBound float64 `json:"cpu_bound_ratio,omitempty"`
}

// PublishRow is reads idle and during a publish, in one mode.
type PublishRow struct {
	Mode        string  `json:"mode"`
	Rows        int     `json:"rows"`
	TookS       float64 `json:"publish_took_s"`
	IdleRPS     float64 `json:"idle_rps"`
	IdleP99ms   float64 `json:"idle_p99_ms"`
	DuringRPS   float64 `json:"during_rps"`
	DuringP99ms float64 `json:"during_p99_ms"`
	DuringMaxMs float64 `json:"during_max_ms"`
	Errors      int     `json:"errors"`
	Ratio       float64 `json:"p99_ratio"`
	Target      float64 `json:"p99_ratio_target"` // at most
	Met         bool    `json:"met"`
	PingIdleP99 float64 `json:"redis_ping_idle_p99_ms"`
	PingDurP99  float64 `json:"redis_ping_during_p99_ms"`
	// RSS of impactd over the publish (MB): at the start, the peak, at
	// the end.
	RSSBeforeMB float64 `json:"rss_before_mb"`
	RSSPeakMB   float64 `json:"rss_peak_mb"`
	RSSAfterMB  float64 `json:"rss_after_mb"`
	PeakExact   bool    `json:"rss_peak_from_vmhwm"`
}

// RSSReport is impactd's resident memory (MB, 10^6 bytes).
type RSSReport struct {
	IdleMB      float64 `json:"idle_mb"`         // VmRSS once ready, before any upload
	LoadedMB    float64 `json:"loaded_mb"`       // VmRSS after the roster's publish and the setup claims
	LoadPeakMB  float64 `json:"load_peak_mb"`    // VmHWM then: the peak of that publish
	PublishPeak float64 `json:"publish_peak_mb"` // the highest peak over the publishes under load
	Note        string  `json:"note,omitempty"`
}

// ClaimsReport is the claim phase.
type ClaimsReport struct {
	Claims   int       `json:"claims_per_wave"`
	Window   int       `json:"in_flight"`
	ReadRate float64   `json:"reads_paced_rps"`
	Waves    []WaveRow `json:"waves"`
	// Ratio is the wall time of the wave with the most replicas over the
	// wave with one.
	Ratio  float64 `json:"wall_ratio,omitempty"`
	Target float64 `json:"wall_ratio_target"` // at most
	Met    bool    `json:"met"`
}

// WaveRow is one claim wave.
type WaveRow struct {
	Replicas     int     `json:"replicas"`
	WallS        float64 `json:"wall_s"`
	ClaimsPerSec float64 `json:"claims_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	Answered     int     `json:"answered"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	ReadRPS      float64 `json:"reads_rps"`
	ReadP99ms    float64 `json:"reads_p99_ms"`
	ReadErrors   int     `json:"reads_errors"`
}

// targetClaimRatio: a wave with 3 replicas takes at most twice as long as
// with 1.
const targetClaimRatio = 2.0

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// targetRow is a measured target as a report row; allocs < 0: not
// measured.
func targetRow(r Result, protocol string, allocs int64) TargetRow {
	t := TargetRow{
		Name: r.Name, Protocol: protocol, RPS: r.RPS(), P50ms: msf(r.P50), P99ms: msf(r.P99), MaxMs: msf(r.Max),
		Requests: r.Requests, Errors: r.Errors, FirstError: errString(r.FirstErr),
		ServerCores: r.CPU.server, RedisCores: r.CPU.redis, GenCores: r.CPU.generator,
	}
	if rps := r.RPS(); rps > 0 {
		t.ServerUs, t.RedisUs = r.CPU.server*1e6/rps, r.CPU.redis*1e6/rps
	}
	if allocs >= 0 && r.Requests > 0 {
		a := float64(allocs) / float64(r.Requests)
		t.AllocsPerReq = &a
	}
	return t
}

// ratioRow is a's req/s over b's.
func ratioRow(name string, a, b Result, target float64) RatioRow {
	row := RatioRow{Name: name}
	if b.RPS() > 0 {
		row.Value = a.RPS() / b.RPS()
	}
	cpu := func(x Result) float64 {
		if x.RPS() == 0 {
			return 0
		}
		return (x.CPU.server + x.CPU.redis + x.CPU.generator) * 1e6 / x.RPS()
	}
	if ca, cb := cpu(a), cpu(b); ca > 0 {
		row.CPUBound = cb / ca
	}
	if target > 0 {
		met := row.Value >= target
		row.Target, row.Met = &target, &met
	}
	return row
}

func publishReportRow(p publishRow, rows int) PublishRow {
	x := 0.0
	if p.idle.P99 > 0 {
		x = float64(p.during.P99) / float64(p.idle.P99)
	}
	return PublishRow{
		Mode: p.mode, Rows: rows, TookS: p.took.Seconds(),
		IdleRPS: p.idle.RPS(), IdleP99ms: msf(p.idle.P99), DuringRPS: p.during.RPS(), DuringP99ms: msf(p.during.P99),
		DuringMaxMs: msf(p.during.Max), Errors: p.idle.Errors + p.during.Errors,
		Ratio: x, Target: targetPublishRatio, Met: x <= targetPublishRatio,
		PingIdleP99: msf(p.idlePing.P99), PingDurP99: msf(p.duringPing.P99),
		RSSBeforeMB: mb(p.rss.Before.RSS), RSSPeakMB: mb(p.rss.Peak), RSSAfterMB: mb(p.rss.After.RSS), PeakExact: p.rss.FromHWM,
	}
}

func claimsReport(cfg *Config, waves []waveResult) *ClaimsReport {
	c := &ClaimsReport{Claims: cfg.Claims, Window: cfg.ClaimWindow, ReadRate: cfg.ClaimReadRate, Target: targetClaimRatio}
	for _, w := range waves {
		c.Waves = append(c.Waves, WaveRow{
			Replicas: w.Replicas, WallS: w.Wall.Seconds(), ClaimsPerSec: w.ClaimsPerSec(),
			P50ms: msf(w.P50), P99ms: msf(w.P99), MaxMs: msf(w.Max), Answered: w.Answered, Errors: w.Errors,
			FirstError: errString(w.FirstErr), ReadRPS: w.Reads.RPS(), ReadP99ms: msf(w.Reads.P99), ReadErrors: w.Reads.Errors,
		})
	}
	if n := len(waves); n >= 2 && waves[0].Wall > 0 {
		c.Ratio = waves[n-1].Wall.Seconds() / waves[0].Wall.Seconds()
		c.Met = c.Ratio <= targetClaimRatio && waves[0].Errors == 0 && waves[n-1].Errors == 0
	}
	return c
}

// impactdFlags is impactd's command line (/proc/<pid>/cmdline) without
// the flags that only place it (listeners, directories, the Redis URL).
func impactdFlags(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	return withoutPlacing(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")[1:])
}

// withoutPlacing drops the flags (and their values) that only say where
// impactd listens and keeps its files.
func withoutPlacing(args []string) []string {
	placing := map[string]bool{"--data-dir": true, "--redis-url": true, "--grpc-addr": true, "--http-addr": true,
		"--admin-grpc-addr": true, "--admin-http-addr": true, "--upload-dir": true}
	out := []string{}
	for i := 0; i < len(args); i++ {
		name, _, withValue := strings.Cut(args[i], "=")
		if placing[name] {
			if !withValue {
				i++ // its value
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as the text block the README shows.
func (r *Report) WriteText(w io.Writer) error {
	s := r.Settings
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("impact-load %s\n%s to %s\n", strings.Join(r.Args, " "), r.Started, r.Finished)
	p("machine: %d CPUs shared by the generator, the servers and Redis; %s; load average %s at start, %s at end\n",
		r.CPUs, r.GoVersion, r.LoadStart, r.LoadEnd)
	p("roster %d rows; %d token subjects (%d in the roster, %d of them notified); c=%d, %d gRPC conns; %s per target in %d rounds, %s warm-up\n",
		s.Rows, s.Tokens, s.InRoster, s.Notified, s.Concurrency, s.Conns, seconds(s.DurationS), s.Rounds, seconds(s.WarmupS))
	p("impactd %s (besides addresses, directories, --redis-url); redis-server appendfsync %s\n\n",
		strings.Join(r.ImpactdFlags, " "), r.AppendFsync)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50 ms\tp99 ms\tmax ms\terrors\tserver cores\tredis cores\tserver µs/req\tredis µs/req\tallocs/req\tratio\t")
	for _, t := range r.Targets {
		allocs := "-"
		if t.AllocsPerReq != nil {
			allocs = fmt.Sprintf("%.1f", *t.AllocsPerReq)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.2f\t%.2f\t%.0f\t%.0f\t%s\t%.0f%%\t\n", t.Name, t.RPS, t.P50ms, t.P99ms, t.MaxMs,
			t.Errors, t.ServerCores, t.RedisCores, t.ServerUs, t.RedisUs, allocs, 100*t.Ratio)
	}
	if g := r.Ghz; g != nil {
		fmt.Fprintf(tw, "minimal grpc-go server, ghz %s\t%.0f\t%.2f\t%.2f\t\t%d\t\t\t\t\t\t\t\n", g.Version, g.RPS, g.P50ms, g.P99ms, g.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p("(ratio: req/s over the minimal server of the same protocol; µs/req: CPU time per request; allocs/req: the server process's heap allocations per request)\n")
	if r.GhzNote != "" {
		p("(ghz: %s)\n", r.GhzNote)
	}
	for _, t := range r.Targets {
		if t.FirstError != "" {
			p("first error of %s: %s\n", t.Name, t.FirstError)
		}
	}
	p("\n")
	for _, x := range r.Ratios {
		p("%s = %.0f%%", x.Name, 100*x.Value)
		if x.Target != nil {
			p(" (target >= %.0f%%): %s", 100**x.Target, verdict(*x.Met))
		}
		if x.CPUBound > 0 {
			p("; per CPU µs (server + Redis + generator) %.0f%%", 100*x.CPUBound)
		}
		p("\n")
	}

	if len(r.Publish) > 0 {
		p("\nimpactd gRPC reads idle and during the upload + publish of a revision of the %d-row roster:\n", r.Publish[0].Rows)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tidle req/s\tidle p99 ms\tduring req/s\tduring p99 ms\tduring max ms\terrors\tp99 x\tpublish s\tRedis PING p99 ms idle/during\timpactd RSS MB before/peak/after\t")
		for _, x := range r.Publish {
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0f\t%.2f\t%.2f\t%d\t%.2fx\t%.1f\t%.2f / %.2f\t%.0f / %.0f / %.0f\t\n", x.Mode, x.IdleRPS, x.IdleP99ms,
				x.DuringRPS, x.DuringP99ms, x.DuringMaxMs, x.Errors, x.Ratio, x.TookS, x.PingIdleP99, x.PingDurP99, x.RSSBeforeMB, x.RSSPeakMB, x.RSSAfterMB)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, x := range r.Publish {
			p("publish p99 / idle p99, %s: %.2fx (target <= %.0fx): %s\n", x.Mode, x.Ratio, x.Target, verdict(x.Met))
		}
	}
	for _, x := range r.PublishRetries {
		p("publish came back UNAVAILABLE and was tried again: %s\n", x)
	}

	if m := r.RSS; m != nil {
		p("\nimpactd RSS: %.0f MB idle; %.0f MB after publishing the %d-row roster (peak %.0f MB during it: +%.0f MB)",
			m.IdleMB, m.LoadedMB, s.Rows, m.LoadPeakMB, m.LoadPeakMB-m.IdleMB)
		if m.PublishPeak > 0 {
			p("; peak %.0f MB during a publish under load (+%.0f MB over idle, +%.0f MB over loaded)", m.PublishPeak, m.PublishPeak-m.IdleMB, m.PublishPeak-m.LoadedMB)
		}
		p("\n")
		if m.Note != "" {
			p("(%s)\n", m.Note)
		}
	}

	if c := r.Claims; c != nil {
		p("\nclaim waves of %d (ClaimNotices on replica 1's ops listener, %d in flight; patient reads paced at %.0f req/s alongside, on the other replicas when there are some):\n",
			c.Claims, c.Window, c.ReadRate)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "replicas\twall s\tclaims/s\tp50 ms\tp99 ms\tmax ms\terrors\treads req/s\treads p99 ms\treads errors\t")
		for _, x := range c.Waves {
			fmt.Fprintf(tw, "%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.0f\t%.2f\t%d\t\n", x.Replicas, x.WallS, x.ClaimsPerSec, x.P50ms, x.P99ms, x.MaxMs,
				x.Errors, x.ReadRPS, x.ReadP99ms, x.ReadErrors)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, x := range c.Waves {
			if x.FirstError != "" {
				p("first error of the wave on %d replica(s): %s\n", x.Replicas, x.FirstError)
			}
		}
		if n := len(c.Waves); n >= 2 {
			p("claim wave, %d replicas / 1: wall time %.2fx (target <= %.0fx): %s\n", c.Waves[n-1].Replicas, c.Ratio, c.Target, verdict(c.Met))
		}
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func seconds(s float64) string { return (time.Duration(s * float64(time.Second))).String() }

// newReport starts a report of the run.
func newReport(cfg *Config, started time.Time, load0 string) *Report {
	return &Report{
		Args: cfg.Args, Started: started.UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		LoadStart: load0, AppendFsync: cfg.AppendFsync,
		Settings: Settings{Rows: cfg.Rows, PublishRows: cfg.PublishRows, Tokens: cfg.Tokens, Concurrency: cfg.Concurrency,
			Conns: cfg.Conns, DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Rounds: cfg.Rounds},
	}
}
