package mail

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM signs messages for a domain (RFC 6376), relaxed canonicalization,
// over the headers a notice carries.
type DKIM struct {
	opts dkim.SignOptions
}

// signedHeaders are the header fields the signature covers; one that is
// absent is signed as absent, so it cannot be added on the way.
var signedHeaders = []string{"From", "Reply-To", "To", "Subject", "Date", "Message-Id",
	"Mime-Version", "Content-Type", "Auto-Submitted"}

// NewDKIM parses a PEM private key (RSA in PKCS #1 or PKCS #8, Ed25519 in
// PKCS #8) and returns a signer for domain and selector.
func NewDKIM(keyPEM []byte, domain, selector string) (*DKIM, error) {
	if domain == "" || selector == "" {
		return nil, errors.New("DKIM needs a domain and a selector")
	}
	if strings.ContainsAny(domain+selector, " ;=\r\n\t") {
		return nil, errors.New("DKIM domain or selector holds a character a DNS name cannot")
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("the DKIM key is not PEM")
	}
	var key crypto.Signer
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("DKIM key: %v", err)
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("DKIM key: %v", err)
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			key = k
		case ed25519.PrivateKey:
			key = k
		default:
			return nil, errors.New("DKIM key: only RSA and Ed25519 keys can sign")
		}
	default:
		return nil, fmt.Errorf("DKIM key: a PEM %q block, want PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() < 1024 {
		return nil, errors.New("DKIM key: RSA keys need at least 1024 bits (2048 advised)")
	}
	return &DKIM{opts: dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: key, Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders,
	}}, nil
}

// Sign returns msg with a DKIM-Signature header field in front.
func (d *DKIM) Sign(msg []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(msg) + 512)
	opts := d.opts
	if err := dkim.Sign(&b, bytes.NewReader(msg), &opts); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
