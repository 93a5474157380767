package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/impact-health/impact/internal/testutil/testproc"
)

// proc is a child process the harness owns; stop ends it.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string // path of its output
}

// startProc starts name with args, its output in logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = env
	}
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.done) }()
	return p, nil
}

// pid is the child's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the child has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (SIGKILL after 15 s).
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail is the end of the child's output, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// startRedis starts a redis-server with appendonly yes and the given
// appendfsync policy ("always" keeps every acknowledged write), its data in
// dir.
func startRedis(ctx context.Context, bin, dir, fsync string) (*proc, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	addrs, err := testproc.FreeAddrs(1)
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	conf := strings.Join([]string{
		"port " + port, "bind 127.0.0.1", "dir " + dir, `save ""`,
		"appendonly yes", "appendfsync " + fsync, "maxmemory 0",
	}, "\n") + "\n"
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	p, err := startProc("redis-server", filepath.Join(dir, "redis.out"), nil, bin, confPath)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ok := ping(addrs[0]); ok {
			return p, addrs[0], nil
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, "", fmt.Errorf("redis-server did not start: %s", p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends a RESP PING.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// redisUsedMemory returns INFO memory's used_memory (bytes), -1 on error.
func redisUsedMemory(addr string) int64 {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return -1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("INFO memory\r\n")); err != nil {
		return -1
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return -1
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return -1
	}
	for _, line := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			x, _ := strconv.ParseInt(v, 10, 64)
			return x
		}
	}
	return -1
}

// impactdProc is a running impactd and its listeners.
type impactdProc struct {
	*proc
	grpc, http, adminGRPC, adminHTTP string
}

// startImpactd starts impactd --dev on the Redis at redisAddr, with its
// default per-subject limit and the per-address limit off (all load comes
// from one address; see ratelimited.go), and waits until /readyz says
// ready.
func startImpactd(ctx context.Context, bin, dataDir, redisAddr, redisQuery, logLevel string, extra []string) (*impactdProc, error) {
	addrs, err := testproc.FreeAddrs(4)
	if err != nil {
		return nil, err
	}
	p := &impactdProc{grpc: addrs[0], http: addrs[1], adminGRPC: addrs[2], adminHTTP: addrs[3]}
	args := []string{
		"--dev", "--data-dir", dataDir, "--store", "redis", "--redis-url", "redis://" + redisAddr + "/0" + query(redisQuery),
		"--grpc-addr", p.grpc, "--http-addr", p.http, "--admin-grpc-addr", p.adminGRPC, "--admin-http-addr", p.adminHTTP,
		"--rate-ip", "off", "--log-level", logLevel, "--shutdown-timeout", "5s",
	}
	if p.proc, err = startProc("impactd", filepath.Join(dataDir, "impactd.log"), testproc.CleanEnv(), bin, append(args, extra...)...); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p.proc, "http://"+p.http+"/readyz", 60*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func query(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := c.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		switch {
		case p.exited():
			return fmt.Errorf("%s exited during start-up:\n%s", p.name, p.logTail())
		case time.Now().After(deadline):
			return fmt.Errorf("%s not ready within %s:\n%s", p.name, timeout, p.logTail())
		case ctx.Err() != nil:
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probeRedis sends a PING every 10 ms on one connection until stop is
// closed (at most limit), and returns the round-trip times: how long Redis
// keeps a command waiting (head-of-line blocking by large pipelines, AOF
// fsyncs, CPU contention).
func probeRedis(addr string, stop <-chan struct{}, limit time.Duration) Result {
	r := Result{Name: "Redis PING"}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		r.FirstErr = err
		return r
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	var lat []time.Duration
	start := time.Now()
	for i := 0; i < int(limit/(10*time.Millisecond)) && !closed(stop); i++ {
		t0 := time.Now()
		_ = c.SetDeadline(t0.Add(10 * time.Second))
		_, err := c.Write([]byte("PING\r\n"))
		if err == nil {
			var line string
			if line, err = rd.ReadString('\n'); err == nil && !strings.HasPrefix(line, "+PONG") {
				err = fmt.Errorf("PING answered %q", line)
			}
		}
		if err != nil {
			r.FirstErr, r.Errors = err, r.Errors+1
			break
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(10 * time.Millisecond)
	}
	r.Elapsed = time.Since(start)
	r.setLatencies(lat)
	return r
}
