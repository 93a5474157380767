package testproc

import (
	"net"
	"strings"
	"testing"
)

func TestFreeAddrsDistinctAndFree(t *testing.T) {
	addrs, err := FreeAddrs(8)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 8 {
		t.Fatalf("got %d addresses, want 8", len(addrs))
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("address %s handed out twice", a)
		}
		seen[a] = true
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" || port == "6379" {
			t.Fatalf("address %q: want 127.0.0.1 and a port other than 6379 (%v)", a, err)
		}
		// The listeners were closed: each address can be bound again.
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("address %s is not free after FreeAddrs returned: %v", a, err)
		}
		_ = l.Close()
	}
}

func TestCleanEnvDropsImpactAndOtel(t *testing.T) {
	t.Setenv("IMPACT_ADDR", "127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("TESTPROC_KEPT", "yes")
	kept := false
	for _, kv := range CleanEnv() {
		if strings.HasPrefix(kv, "IMPACT_") || strings.HasPrefix(kv, "OTEL_") {
			t.Errorf("CleanEnv kept %q", kv)
		}
		if kv == "TESTPROC_KEPT=yes" {
			kept = true
		}
	}
	if !kept {
		t.Error("CleanEnv dropped TESTPROC_KEPT, which is neither IMPACT_* nor OTEL_*")
	}
}
