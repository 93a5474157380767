package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

func testPepper(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// refKey is an independent computation of the spec'd derivation.
func refKey(pepper []byte, domain, id string) [16]byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(domain + "\x00" + id))
	var out [16]byte
	copy(out[:], m.Sum(nil))
	return out
}

func TestKeyer(t *testing.T) {
	k, err := NewKeyer(testPepper(1))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"", "alice", "patient-0001", strings.Repeat("x", 10000), "subject\x00alice", "ü"}
	for _, id := range ids {
		if got, want := k.SubjectKey(id), store.Key(refKey(testPepper(1), "subject", id)); got != want {
			t.Errorf("SubjectKey(%.10q) = %x, want %x", id, got, want)
		}
		if got, want := k.IdemKey(id), store.IdemKey(refKey(testPepper(1), "idem", id)); got != want {
			t.Errorf("IdemKey(%.10q) = %x, want %x", id, got, want)
		}
		// Deterministic.
		if k.SubjectKey(id) != k.SubjectKey(id) || k.IdemKey(id) != k.IdemKey(id) {
			t.Errorf("%.10q: not deterministic", id)
		}
		// Domain separated.
		if [16]byte(k.SubjectKey(id)) == [16]byte(k.IdemKey(id)) {
			t.Errorf("%.10q: subject and idempotency keys collide", id)
		}
	}
	if k.SubjectKey("alice") == k.SubjectKey("alicf") {
		t.Error("different ids give the same key")
	}
	// The prefix is length-delimited by the NUL: "subject" domain of "x"
	// differs from an id that spells the other domain.
	if [16]byte(k.SubjectKey("x")) == [16]byte(k.IdemKey("subject\x00x")) {
		t.Error("domains are not separated")
	}

	// The pepper matters, and is copied.
	p := testPepper(2)
	k2, err := NewKeyer(p)
	if err != nil {
		t.Fatal(err)
	}
	before := k2.SubjectKey("alice")
	if before == k.SubjectKey("alice") {
		t.Error("different peppers give the same key")
	}
	p[0] ^= 0xff
	if k2.SubjectKey("alice") != before {
		t.Error("Keyer did not copy its pepper")
	}

	// Long ids do not leave a huge scratch buffer behind and still work.
	long := strings.Repeat("y", 1<<20)
	if k.SubjectKey(long) != store.Key(refKey(testPepper(1), "subject", long)) {
		t.Error("long id")
	}
}

func TestNewKeyerShortPepper(t *testing.T) {
	for _, n := range []int{0, 1, 31} {
		if _, err := NewKeyer(make([]byte, n)); err == nil {
			t.Errorf("pepper of %d bytes accepted", n)
		}
	}
}

func TestKeyerConcurrent(t *testing.T) {
	k, err := NewKeyer(testPepper(3))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				id := strings.Repeat("s", (g*7+i)%90) + string(rune('a'+g))
				if k.SubjectKey(id) != store.Key(refKey(testPepper(3), "subject", id)) {
					t.Errorf("goroutine %d: wrong key", g)
					return
				}
				if k.IdemKey(id) != store.IdemKey(refKey(testPepper(3), "idem", id)) {
					t.Errorf("goroutine %d: wrong idem key", g)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestKeyerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	k, _ := NewKeyer(testPepper(4))
	k.SubjectKey("warm")
	if n := testing.AllocsPerRun(100, func() { k.SubjectKey("patient-000123") }); n > 0 {
		t.Errorf("SubjectKey allocates %.1f times per call", n)
	}
}

func TestLoadPepper(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte{0xab, 0x00, 0x7f, 0xfe}, 8) // 32 non-hex bytes
	hexP := hex.EncodeToString(testPepper(9))
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    []byte
		errHas  string
	}{
		{"hex", []byte(hexP), 0o600, testPepper(9), ""},
		{"hex with newline", []byte(hexP + "\n"), 0o600, testPepper(9), ""},
		{"upper hex", []byte(strings.ToUpper(hexP)), 0o400, testPepper(9), ""},
		{"raw bytes", raw, 0o600, raw, ""},
		{"long hex", []byte(strings.Repeat("0f", 64)), 0o600, bytes.Repeat([]byte{0x0f}, 64), ""},
		{"short hex", []byte(strings.Repeat("ab", 16)), 0o600, nil, "at least 32"},
		{"short raw", []byte("too short"), 0o600, nil, "at least 32"},
		{"empty", nil, 0o600, nil, "at least 32"},
		{"group readable (Kubernetes Secret with fsGroup)", []byte(hexP), 0o440, testPepper(9), ""},
		{"group writable", []byte(hexP), 0o660, nil, "chmod 600"},
		{"world readable", []byte(hexP), 0o644, nil, "chmod 600"},
		{"too large", bytes.Repeat([]byte{1}, 5000), 0o600, nil, "larger"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "p"+string(rune('a'+i)))
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := LoadPepper(path)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tt.errHas)
				}
				if err != nil && strings.Contains(err.Error(), hexP) {
					t.Fatal("error echoes the pepper")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("pepper = %x, want %x", got, tt.want)
			}
		})
	}
	if _, err := LoadPepper(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := LoadPepper(dir); err == nil {
		t.Error("directory accepted")
	}
}
