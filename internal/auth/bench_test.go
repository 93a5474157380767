package auth

import (
	"context"
	"strconv"
	"testing"
)

func BenchmarkVerifyCached(b *testing.B) {
	k := theKeys()
	v, _ := fileVerifier(b, newClock(), Config{}, k.ec1)
	tok := sign(b, k.ec1, "ec1", "", goodClaims())
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	k := theKeys()
	for _, tc := range []struct {
		name string
		key  *testKey
	}{{"ES256", k.ec1}, {"RS256", k.rsa1}, {"EdDSA", k.ed1}} {
		b.Run(tc.name, func(b *testing.B) {
			v, _ := fileVerifier(b, newClock(), Config{CacheSize: -1}, tc.key)
			tok := sign(b, tc.key, tc.key.kid, "", goodClaims())
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyRejectGarbage(b *testing.B) {
	k := theKeys()
	v, _ := fileVerifier(b, newClock(), Config{}, k.ec1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(ctx, "Bearer not-a-token"); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkSubjectKey(b *testing.B) {
	k, err := NewKeyer(testPepper(7))
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "patient-" + strconv.Itoa(1_000_000+i)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k.SubjectKey(ids[i&1023])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				k.SubjectKey(ids[i&1023])
				i++
			}
		})
	})
}
