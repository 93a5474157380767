package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/impact-health/impact/internal/testutil/testproc"
)

// readyTimeout bounds how long impactd may take to answer /readyz 200.
const readyTimeout = 60 * time.Second

// Impactd is one impactd replica: the same ports and data directory across
// kills and restarts, so that clients reconnect to it as they would to a
// restarted pod.
type Impactd struct {
	Name    string
	env     *Env
	dataDir string
	args    []string
	HTTP    string
	admin   string
	proc    *Proc
	Public  *grpc.ClientConn
	Admin   *grpc.ClientConn
}

// StartImpactd starts replica name with the store flags in extra, dev keys
// in the Env's shared key directory (every replica and the harness mint
// tokens from the same keys), and waits until it is ready.
func (e *Env) StartImpactd(ctx context.Context, name string, extra ...string) (*Impactd, error) {
	addrs, err := testproc.FreeAddrs(4)
	if err != nil {
		return nil, err
	}
	d := &Impactd{Name: name, env: e, dataDir: e.DataDir, HTTP: addrs[1], admin: addrs[2]}
	d.args = append([]string{
		"--dev", "--data-dir", e.DataDir, "--upload-dir", filepath.Join(e.Dir, name+"-uploads"),
		"--grpc-addr", addrs[0], "--http-addr", addrs[1],
		"--admin-grpc-addr", addrs[2], "--admin-http-addr", addrs[3],
		"--shutdown-timeout", "2s", "--web=false",
		"--rate-subject", "off", "--rate-ip", "off",
		"--request-timeout", e.RequestTimeout.String(),
	}, extra...)
	e.mu.Lock()
	e.logs = append(e.logs, filepath.Join(e.Dir, name+".log"))
	e.mu.Unlock()
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	// Reconnect fast after a restart: the recovery time measured is
	// impactd's, not the gRPC client's back-off.
	bo := grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
		BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 250 * time.Millisecond,
	}, MinConnectTimeout: time.Second})
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	if d.Public, err = grpc.NewClient(addrs[0], creds, bo); err != nil {
		return nil, err
	}
	if d.Admin, err = grpc.NewClient(addrs[2], creds, bo); err != nil {
		return nil, err
	}
	e.cleanup(d.close)
	return d, nil
}

// AdminAddr is the ops gRPC listener (for impactctl --addr).
func (d *Impactd) AdminAddr() string { return d.admin }

func (d *Impactd) start(ctx context.Context) error {
	p, err := StartProc(d.Name, filepath.Join(d.env.Dir, d.Name+".log"), d.env.ImpactdBin, testproc.CleanEnv(), d.args...)
	if err != nil {
		return err
	}
	d.proc = p
	if err := d.waitReady(ctx, readyTimeout); err != nil {
		p.Kill()
		return fmt.Errorf("%s: %w\n%s", d.Name, err, p.LogTail())
	}
	return nil
}

// Kill is SIGKILL, then waiting for the exit.
func (d *Impactd) Kill() { d.proc.Kill() }

// Restart starts the replica again on the same ports and data directory
// (after Kill) and waits until it is ready.
func (d *Impactd) Restart(ctx context.Context) error {
	d.proc.Kill()
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = d.start(ctx); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		time.Sleep(100 * time.Millisecond) // a port may linger briefly
	}
	return err
}

// Exited reports whether the process has exited.
func (d *Impactd) Exited() bool { return d.proc.Exited() }

func (d *Impactd) close() {
	d.proc.Stop()
	if d.Public != nil {
		_ = d.Public.Close()
	}
	if d.Admin != nil {
		_ = d.Admin.Close()
	}
}

// waitReady polls /readyz until it answers 200.
func (d *Impactd) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		if d.proc.Exited() {
			return errors.New("exited during start-up")
		}
		if resp, err := c.Get("http://" + d.HTTP + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %w", timeout, errTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
