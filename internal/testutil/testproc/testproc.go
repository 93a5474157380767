// Package testproc prepares the processes (impactd, redis-server) a test or
// a harness starts: free loopback addresses and a clean environment.
package testproc

import (
	"net"
	"os"
	"strings"
)

// redisPort is the port of a Redis the machine may run itself: never handed
// out, so that no process of ours is started next to it or mistaken for it.
const redisPort = 6379

// FreeAddrs returns n distinct 127.0.0.1 addresses (HOST:PORT) nobody
// listens on now: it holds a listener on each until all n are found, then
// closes them, so the addresses are distinct, though another process may
// take one before the caller binds it.
func FreeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]string, 0, n)
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		if l.Addr().(*net.TCPAddr).Port == redisPort {
			continue
		}
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// CleanEnv is this process's environment without IMPACT_* and OTEL_*
// settings, so that an operator's or a developer's shell does not change
// the processes under test.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IMPACT_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}
