// Package netproxy is a TCP proxy for tests and the fault harness: it sits
// between a client (impactd) and a server (Redis) and injects faults:
// latency, connection resets, and a freeze (bytes held, connections kept
// open: a partition that TCP does not notice).
package netproxy

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy between impactd and Redis that injects faults:
// latency added to every chunk in each direction, connection resets, and
// freezes.
type Proxy struct {
	l      net.Listener
	target string

	mu               sync.Mutex
	thaw             chan struct{} // non-nil while frozen: closed on thaw
	conns            map[*net.TCPConn]struct{}
	latMin, latMax   time.Duration
	resets, accepted int
	closed           bool
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, conns: map[*net.TCPConn]struct{}{}}
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (give it to impactd as Redis's).
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// SetLatency makes every chunk wait a uniform random time in [lo, hi]
// before it is forwarded, in each direction; zero turns latency off.
func (p *Proxy) SetLatency(lo, hi time.Duration) {
	p.mu.Lock()
	p.latMin, p.latMax = lo, hi
	p.mu.Unlock()
}

// Freeze holds every byte in both directions, on open and new connections,
// until Thaw: to the client, the server stops answering without a reset.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	if p.thaw == nil {
		p.thaw = make(chan struct{})
	}
	p.mu.Unlock()
}

// Thaw forwards again what Freeze held, and what follows.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	if p.thaw != nil {
		close(p.thaw)
		p.thaw = nil
	}
	p.mu.Unlock()
}

// held blocks while the proxy is frozen.
func (p *Proxy) held() {
	p.mu.Lock()
	ch := p.thaw
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (p *Proxy) latency() time.Duration {
	p.mu.Lock()
	lo, hi := p.latMin, p.latMax
	p.mu.Unlock()
	if hi <= 0 {
		return 0
	}
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

// ResetAll resets every open connection (RST, not FIN: SO_LINGER 0), as a
// network fault or a restarted middlebox would; it returns how many.
func (p *Proxy) ResetAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		_ = c.SetLinger(0)
		_ = c.Close()
		delete(p.conns, c)
		n++
	}
	p.resets += n
	return n
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Thaw()
	_ = p.l.Close()
	p.ResetAll()
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.serve(c.(*net.TCPConn))
	}
}

func (p *Proxy) track(cs ...*net.TCPConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	p.accepted++
	return true
}

func (p *Proxy) forget(cs ...*net.TCPConn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *Proxy) serve(client *net.TCPConn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = client.SetLinger(0)
		_ = client.Close()
		return
	}
	server := up.(*net.TCPConn)
	if !p.track(client, server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
	p.forget(client, server)
	_ = client.Close()
	_ = server.Close()
}

// pipe copies src to dst, delaying each chunk; when either side fails,
// both are closed.
func (p *Proxy) pipe(dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.held()
			if d := p.latency(); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = dst.SetLinger(0)
			}
			_ = dst.Close()
			_ = src.Close()
			return
		}
	}
}
