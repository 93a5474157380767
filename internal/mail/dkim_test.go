package mail_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/impact-health/impact/internal/mail"
)

// dnsRecord returns the TXT record that publishes pub for the verifier.
func dnsRecord(t *testing.T, pub any) string {
	t.Helper()
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	t.Fatalf("key %T", pub)
	return ""
}

func TestDKIMSignatureVerifies(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]struct {
		pem []byte
		pub any
	}{
		"ed25519 PKCS8": {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), edKey.Public()},
		"rsa PKCS1":     {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), rsaKey.Public()},
	}
	msg := messages(t, 1)[0].Data
	for name, k := range keys {
		signer, err := mail.NewDKIM(k.pem, "health.example", "notices2026")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		signed, err := signer.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		lookup := func(domain string) ([]string, error) {
			if domain != "notices2026._domainkey.health.example" {
				t.Errorf("looked up %s", domain)
			}
			return []string{dnsRecord(t, k.pub)}, nil
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "health.example" {
			t.Fatalf("%s: verify = %+v, %v", name, vs, err)
		}
		for _, h := range []string{"from", "to", "subject", "date", "message-id"} {
			found := false
			for _, got := range vs[0].HeaderKeys {
				found = found || strings.EqualFold(got, h)
			}
			if !found {
				t.Errorf("%s: the signature does not cover %s (covers %v)", name, h, vs[0].HeaderKeys)
			}
		}
		// A changed body no longer verifies.
		tampered := bytes.Replace(signed, []byte("Body of"), []byte("Bodx of"), 1)
		vs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(vs) != 1 || vs[0].Err == nil {
			t.Errorf("%s: a tampered message verified: %+v %v", name, vs, err)
		}
	}
}

func TestDKIMRejectsBadKeys(t *testing.T) {
	for name, tt := range map[string]struct {
		pem      []byte
		dom, sel string
		want     string
	}{
		"not PEM":    {[]byte("hello"), "d.example", "s", "not PEM"},
		"cert block": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "d.example", "s", "CERTIFICATE"},
		"no domain":  {nil, "", "s", "domain and a selector"},
		"bad sel":    {nil, "d.example", "a;b", "DNS name"},
	} {
		if _, err := mail.NewDKIM(tt.pem, tt.dom, tt.sel); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tt.want)
		}
	}
}
