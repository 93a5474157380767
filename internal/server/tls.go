package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// tlsSetup is the transport security of the four listeners and of the two
// gateway connections. A nil config means plaintext.
//
//   - With Config.TLSCertFile and TLSKeyFile, the patient gRPC and REST
//     listeners serve TLS 1.2 or later with that certificate. The REST
//     gateway dials the patient gRPC listener over loopback with TLS, trusting
//     exactly that certificate under its first DNS (or IP) name.
//   - With Config.AdminClientCAFile as well, the ops gRPC and REST listeners
//     serve TLS with the same certificate and require a client certificate
//     issued by that CA (mutual TLS). The ops gateway presents its own
//     client certificate, generated at start and kept in memory only, which
//     the ops gRPC listener (and nothing else) trusts in addition to the CA.
//   - Without a client CA the ops listeners stay plaintext: keep them on
//     loopback or a private network.
type tlsSetup struct {
	publicGRPC, publicHTTP *tls.Config
	adminGRPC, adminHTTP   *tls.Config
	gwPublic, gwAdmin      credentials.TransportCredentials
}

// hstsValue is the Strict-Transport-Security header of TLS listeners.
const hstsValue = "max-age=31536000; includeSubDomains"

// loadTLS reads the certificate, key and client CA files named by cfg.
func loadTLS(cfg Config) (*tlsSetup, error) {
	ts := &tlsSetup{gwPublic: insecure.NewCredentials(), gwAdmin: insecure.NewCredentials()}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	if cfg.TLSCertFile == "" {
		if cfg.AdminClientCAFile != "" {
			return nil, errors.New("mutual TLS on the ops listeners (admin client CA) needs a server certificate and key")
		}
		return ts, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	}
	serverName := ""
	switch {
	case len(leaf.DNSNames) > 0:
		serverName = leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		serverName = leaf.IPAddresses[0].String()
	default:
		return nil, errors.New("TLS certificate has no DNS or IP subject alternative name")
	}
	// The gateways trust exactly the server's own certificate: a leaf in
	// the root pool verifies as a chain of one.
	self := x509.NewCertPool()
	self.AddCert(leaf)

	server := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	ts.publicGRPC = server.Clone()
	ts.publicHTTP = server.Clone()
	ts.publicHTTP.NextProtos = []string{"h2", "http/1.1"}
	ts.gwPublic = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: self, ServerName: serverName})

	if cfg.AdminClientCAFile == "" {
		return ts, nil
	}
	caPEM, err := os.ReadFile(cfg.AdminClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("admin client CA: %w", err)
	}
	operators := x509.NewCertPool()
	if !operators.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("admin client CA %s holds no PEM certificate", cfg.AdminClientCAFile)
	}
	gwCert, gwLeaf, err := gatewayClientCert()
	if err != nil {
		return nil, err
	}
	withGateway := operators.Clone()
	withGateway.AddCert(gwLeaf)

	ts.adminGRPC = server.Clone()
	ts.adminGRPC.ClientAuth = tls.RequireAndVerifyClientCert
	ts.adminGRPC.ClientCAs = withGateway
	ts.adminHTTP = server.Clone()
	ts.adminHTTP.NextProtos = []string{"h2", "http/1.1"}
	ts.adminHTTP.ClientAuth = tls.RequireAndVerifyClientCert
	ts.adminHTTP.ClientCAs = operators
	ts.gwAdmin = credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: self, ServerName: serverName,
		Certificates: []tls.Certificate{gwCert},
	})
	return ts, nil
}

// gatewayClientCert makes the ops gateway's client certificate: a fresh
// P-256 key that never leaves memory, self-signed, for client auth only.
func gatewayClientCert() (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("gateway client certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("gateway client certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "impactd ops gateway"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0), // lives as long as the process
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("gateway client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("gateway client certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}

// grpcCreds returns the server credentials of a gRPC listener.
func (ts *tlsSetup) grpcCreds(admin bool) credentials.TransportCredentials {
	c := ts.publicGRPC
	if admin {
		c = ts.adminGRPC
	}
	if c == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(c)
}

// httpTLS returns the TLS config of a REST listener, nil for plaintext.
func (ts *tlsSetup) httpTLS(admin bool) *tls.Config {
	if admin {
		return ts.adminHTTP
	}
	return ts.publicHTTP
}

// gatewayCreds returns the credentials the gateway of a side dials with.
func (ts *tlsSetup) gatewayCreds(admin bool) credentials.TransportCredentials {
	if admin {
		return ts.gwAdmin
	}
	return ts.gwPublic
}
