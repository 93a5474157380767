package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// tlsSetup is the transport security of the four listeners. A nil config
// means plaintext. The REST gateways call their side's services in process
// (inproc.go): a REST request's transport security is the REST listener's.
//
//   - With Config.TLSCertFile and TLSKeyFile, the patient gRPC and REST
//     listeners serve TLS 1.2 or later with that certificate.
//   - With Config.AdminClientCAFile as well, the ops gRPC and REST listeners
//     serve TLS with the same certificate and require a client certificate
//     issued by that CA (mutual TLS): an ops REST request reaches the
//     gateway only from an operator's certificate.
//   - Without a client CA the ops listeners stay plaintext: keep them on
//     loopback or a private network.
type tlsSetup struct {
	publicGRPC, publicHTTP *tls.Config
	adminGRPC, adminHTTP   *tls.Config
}

// hstsValue is the Strict-Transport-Security header of TLS listeners.
const hstsValue = "max-age=31536000; includeSubDomains"

// loadTLS reads the certificate, key and client CA files named by cfg.
func loadTLS(cfg Config) (*tlsSetup, error) {
	ts := &tlsSetup{}
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
	// A certificate the gRPC clients (impactctl, the app) can verify by name.
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		return nil, errors.New("TLS certificate has no DNS or IP subject alternative name")
	}

	server := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	ts.publicGRPC = server.Clone()
	ts.publicHTTP = server.Clone()
	ts.publicHTTP.NextProtos = []string{"h2", "http/1.1"}

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
	ts.adminGRPC = server.Clone()
	ts.adminGRPC.ClientAuth = tls.RequireAndVerifyClientCert
	ts.adminGRPC.ClientCAs = operators
	ts.adminHTTP = server.Clone()
	ts.adminHTTP.NextProtos = []string{"h2", "http/1.1"}
	ts.adminHTTP.ClientAuth = tls.RequireAndVerifyClientCert
	ts.adminHTTP.ClientCAs = operators
	return ts, nil
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
