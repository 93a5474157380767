package impacttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// CA is a throw-away certificate authority made in a test (ECDSA P-256,
// valid from an hour ago for a day).
type CA struct {
	// Cert and Key sign the leaves.
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Pool holds Cert alone: the roots of a client or server that trusts
	// this CA.
	Pool *x509.CertPool
	// PEM is Cert in PEM, for a CA file (server.Config.AdminClientCAFile,
	// impactctl --ca-file).
	PEM []byte
}

// NewCA makes a CA whose subject common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// IssueServer makes a leaf for TLS servers (server-auth extended key
// usage) with the given subject alternative names (none makes a
// certificate impactd refuses). It returns the pair and its certificate
// and key in PEM.
func (ca *CA) IssueServer(t testing.TB, dnsNames []string, ips ...net.IP) (pair tls.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	return ca.issue(t, x509.ExtKeyUsageServerAuth, dnsNames, ips)
}

// IssueClient makes a leaf for TLS clients (client-auth extended key
// usage), as the ops listeners with mutual TLS require. It returns the
// pair and its certificate and key in PEM.
func (ca *CA) IssueClient(t testing.TB) (pair tls.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	return ca.issue(t, x509.ExtKeyUsageClientAuth, nil, nil)
}

func (ca *CA) issue(t testing.TB, usage x509.ExtKeyUsage, dnsNames []string, ips []net.IP) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, "test leaf")
	tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
	tmpl.DNSNames, tmpl.IPAddresses = dnsNames, ips
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// newKey makes a P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// template is a certificate for cn with a random serial, valid from an
// hour ago for a day.
func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	return &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

// serial is a random positive certificate serial number (at most 128 bits).
func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}
