package loadgen

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of the load harness (impactd against the minimal servers).
const (
	targetGRPCRatio    = 0.60  // impactd gRPC req/s over the minimal grpc-go server's
	targetRESTRatio    = 0.50  // impactd REST req/s over the minimal net/http handler's
	targetPublishRatio = 2.0   // p99 during a publish over the idle p99
	targetPublishRSSMB = 200.0 // impactd's resident memory growth during an upload + publish, MB
)

// ghzResult is ghz's figure for the minimal gRPC server.
type ghzResult struct {
	version  string
	rps      float64
	p50, p99 time.Duration
	count    int
	errors   int
	note     string // why there is no figure
}

// runGhz measures the minimal gRPC server with ghz, if available.
func (h *harness) runGhz(ctx context.Context) *ghzResult {
	bin := h.cfg.Ghz
	switch bin {
	case "off":
		return nil
	case "":
		p, err := exec.LookPath("ghz")
		if err != nil {
			return &ghzResult{note: "ghz not on PATH (go install github.com/bojand/ghz/cmd/ghz@v0.93.0)"}
		}
		bin = p
	}
	ver := "(version unknown)"
	if bi, err := buildinfo.ReadFile(bin); err == nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	} else if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		ver = strings.TrimSpace(string(out))
	}
	h.logf("measuring the minimal grpc-go server with ghz %s", ver)
	cctx, cancel := context.WithTimeout(ctx, h.cfg.Duration+h.cfg.Warmup+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, "--insecure", "--format", "json",
		"--call", "impact.v1.StatusService/GetMyStatus", "-d", `{"incident_id":"mmh-2025-12"}`,
		"-c", fmt.Sprint(h.cfg.Concurrency), "--connections", fmt.Sprint(h.cfg.Conns),
		"-z", h.cfg.Duration.String(), "-n", "100000000", h.minGRPC).Output()
	if err != nil {
		return &ghzResult{note: fmt.Sprintf("ghz failed: %v", err)}
	}
	var rep struct {
		Count   int     `json:"count"`
		RPS     float64 `json:"rps"`
		Latency []struct {
			Percentage int   `json:"percentage"`
			Latency    int64 `json:"latency"`
		} `json:"latencyDistribution"`
		ErrorDist  map[string]int `json:"errorDistribution"`
		StatusDist map[string]int `json:"statusCodeDistribution"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return &ghzResult{note: fmt.Sprintf("ghz output: %v", err)}
	}
	r := &ghzResult{version: ver, rps: rep.RPS, count: rep.Count}
	for _, l := range rep.Latency {
		switch l.Percentage {
		case 50:
			r.p50 = time.Duration(l.Latency)
		case 99:
			r.p99 = time.Duration(l.Latency)
		}
	}
	for _, n := range rep.ErrorDist {
		r.errors += n
	}
	return r
}

func (h *harness) print(results []Result, ig, mg, ir, mr Result, pub []publishRow, ghz *ghzResult, load0 string) {
	cfg := h.cfg
	w := h.out
	extra := append([]string{}, cfg.ImpactdFlags...)
	if cfg.RedisQuery != "" {
		extra = append(extra, "--redis-url ...?"+cfg.RedisQuery)
	}
	fmt.Fprintf(w, "\nimpact-load: roster %d rows; %d token subjects (%d in the roster, %d of them notified); c=%d, %d gRPC conns, %s per phase after %s warm-up\n",
		cfg.Rows, len(h.tokens), h.affected, h.notified, cfg.Concurrency, cfg.Conns, cfg.Duration, cfg.Warmup)
	fmt.Fprintf(w, "machine: %d CPUs (generator, servers and Redis share them), %s; load average at start %s, at end %s\n",
		runtime.NumCPU(), runtime.Version(), load0, loadAvg())
	fmt.Fprintf(w, "impactd: --store redis (appendfsync %s), JWT verification on, rate limits off, --log-level %s %s\n\n",
		cfg.AppendFsync, cfg.LogLevel, strings.Join(extra, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50 ms\tp99 ms\tmax ms\trequests\terrors\tserver cores\tredis cores\tgenerator cores\tserver µs/req\t")
	for _, r := range results {
		perReq := 0.0
		if r.RPS() > 0 {
			perReq = r.CPU.server * 1e6 / r.RPS()
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.0f\t\n", r.Name, r.RPS(), ms(r.P50), ms(r.P99), ms(r.Max),
			r.Requests, r.Errors, r.CPU.server, r.CPU.redis, r.CPU.generator, perReq)
	}
	if ghz != nil && ghz.note == "" {
		fmt.Fprintf(tw, "minimal grpc-go server, ghz %s\t%.0f\t%s\t%s\t\t%d\t%d\t\t\t\t\t\n", ghz.version, ghz.rps, ms(ghz.p50), ms(ghz.p99), ghz.count, ghz.errors)
	}
	_ = tw.Flush()
	if ghz != nil && ghz.note != "" {
		fmt.Fprintf(w, "(ghz: %s)\n", ghz.note)
	}
	for _, r := range results {
		if r.FirstErr != nil {
			fmt.Fprintf(w, "first error of %s: %v\n", r.Name, r.FirstErr)
		}
	}
	fmt.Fprintln(w)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	ratio := func(a, b Result) float64 {
		if b.RPS() == 0 {
			return 0
		}
		return a.RPS() / b.RPS()
	}
	g, r := ratio(ig, mg), ratio(ir, mr)
	fmt.Fprintf(w, "gRPC: impactd / minimal grpc-go = %.0f%% (target >= %.0f%%): %s\n", 100*g, 100*targetGRPCRatio, verdict(g >= targetGRPCRatio))
	fmt.Fprintf(w, "REST: impactd / minimal net/http = %.0f%% (target >= %.0f%%): %s\n", 100*r, 100*targetRESTRatio, verdict(r >= targetRESTRatio))
	// CPU per request of all three parties: what the ratio would be on a
	// machine whose cores only this run used (the run is CPU-bound).
	perReq := func(x Result) float64 {
		if x.RPS() == 0 {
			return 0
		}
		return (x.CPU.server + x.CPU.redis + x.CPU.generator) * 1e6 / x.RPS()
	}
	for _, p := range [][2]Result{{ig, mg}, {ir, mr}} {
		if a, b := perReq(p[0]), perReq(p[1]); a > 0 {
			fmt.Fprintf(w, "  CPU per request (server + Redis + generator): %s %.0f µs, %s %.0f µs: CPU-bound ratio %.0f%%\n",
				p[0].Name, a, p[1].Name, b, 100*b/a)
		}
	}
	for _, p := range pub {
		x := 0.0
		if p.idle.P99 > 0 {
			x = float64(p.during.P99) / float64(p.idle.P99)
		}
		fmt.Fprintf(w, "publish of %d rows took %s; gRPC p99 %s ms during it vs %s ms idle, %s: %.2fx (target <= %.0fx): %s\n",
			cfg.PublishRows, p.took.Round(time.Millisecond), ms(p.during.P99), ms(p.idle.P99), p.mode, x, targetPublishRatio, verdict(x <= targetPublishRatio))
		fmt.Fprintf(w, "  Redis PING every 10 ms alongside: p50/p99/max %s/%s/%s ms idle, %s/%s/%s ms during the publish\n",
			ms(p.idlePing.P50), ms(p.idlePing.P99), ms(p.idlePing.Max), ms(p.duringPing.P50), ms(p.duringPing.P99), ms(p.duringPing.Max))
		fmt.Fprintf(w, "  impactd RSS %.0f MB before the upload, peak %.0f MB during upload + publish: +%.0f MB (target <= +%.0f MB): %s\n",
			float64(p.rss.before)*1024/1e6, float64(p.rss.peak)*1024/1e6, p.rss.growthMB(), targetPublishRSSMB, verdict(p.rss.growthMB() <= targetPublishRSSMB))
	}
}
