package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Metadata the patient gateway adds to each call so that the gRPC side can
// rate-limit REST callers by their own address rather than the gateway's.
// The address is believed only with the process's gateway secret, so a
// direct gRPC caller cannot choose its own address.
const (
	mdGatewaySecret = "x-impact-gateway"
	mdClientAddr    = "x-impact-client-addr"
)

// clientAddrs resolves the address a request comes from: the TCP peer, or,
// when the peer is a configured trusted proxy, the right-most address of the
// trusted proxy header that is not itself a trusted proxy.
type clientAddrs struct {
	header  string // canonical HTTP header name, "" when none is trusted
	proxies []netip.Prefix
	secret  string // gateway secret, hex
}

func newClientAddrs(header string, proxies []netip.Prefix) (*clientAddrs, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	c := &clientAddrs{proxies: proxies, secret: hex.EncodeToString(b[:])}
	if header != "" && len(proxies) > 0 {
		c.header = http.CanonicalHeaderKey(header)
	}
	return c, nil
}

func (c *clientAddrs) trusted(a netip.Addr) bool {
	for _, p := range c.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// resolve returns the client address given the peer and the values of the
// trusted proxy header (each possibly a comma-separated list).
func (c *clientAddrs) resolve(peerAddr netip.Addr, forwarded []string) netip.Addr {
	peerAddr = peerAddr.Unmap()
	if c.header == "" || !peerAddr.IsValid() || !c.trusted(peerAddr) {
		return peerAddr
	}
	// Walk from the right: each hop appended the address it saw.
	for i := len(forwarded) - 1; i >= 0; i-- {
		parts := strings.Split(forwarded[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, ok := parseHostAddr(parts[j])
			if !ok {
				return peerAddr // a garbled hop: trust nothing left of it
			}
			if !c.trusted(a) {
				return a
			}
		}
	}
	return peerAddr
}

// parseHostAddr reads "1.2.3.4", "1.2.3.4:567", "[::1]:8" or "::1".
func parseHostAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// fromHTTP resolves the client address of a REST request.
func (c *clientAddrs) fromHTTP(r *http.Request) netip.Addr {
	p, _ := parseHostAddr(r.RemoteAddr)
	var fwd []string
	if c.header != "" {
		fwd = r.Header.Values(c.header)
	}
	return c.resolve(p, fwd)
}

// gatewayMetadata is the grpc-gateway metadata hook of the patient gateway.
func (c *clientAddrs) gatewayMetadata(_ context.Context, r *http.Request) metadata.MD {
	a := c.fromHTTP(r)
	if !a.IsValid() {
		return metadata.Pairs(mdGatewaySecret, c.secret)
	}
	return metadata.Pairs(mdGatewaySecret, c.secret, mdClientAddr, a.String())
}

// fromGRPC resolves the client address of a gRPC call: the gateway's word
// for REST calls, else the peer (or trusted proxy header).
func (c *clientAddrs) fromGRPC(ctx context.Context) netip.Addr {
	md, _ := metadata.FromIncomingContext(ctx)
	if s := md.Get(mdGatewaySecret); len(s) == 1 && subtle.ConstantTimeCompare([]byte(s[0]), []byte(c.secret)) == 1 {
		if v := md.Get(mdClientAddr); len(v) == 1 {
			if a, ok := parseHostAddr(v[0]); ok {
				return a
			}
		}
		return netip.Addr{}
	}
	var pa netip.Addr
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if tcp, ok := p.Addr.(*net.TCPAddr); ok {
			pa, _ = netip.AddrFromSlice(tcp.IP)
		} else {
			pa, _ = parseHostAddr(p.Addr.String())
		}
	}
	var fwd []string
	if c.header != "" {
		fwd = md.Get(strings.ToLower(c.header))
	}
	return c.resolve(pa, fwd)
}

// addrKey is the rate-limit identity of an address: IPv4 addresses one by
// one, IPv6 by /64 (one subscriber's usual allocation).
func addrKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
