package loadgen

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Targets of the load harness (impactd against the minimal servers).
const (
	targetGRPCRatio    = 0.60 // impactd gRPC req/s over the minimal grpc-go server's
	targetRESTRatio    = 0.50 // impactd REST req/s over the minimal net/http handler's
	targetPublishRatio = 2.0  // p99 during a publish over the idle p99
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
