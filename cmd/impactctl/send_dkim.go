package main

import (
	"fmt"
	"os"

	"github.com/impact-health/impact/internal/mail"
)

// loadDKIM returns the signer the --dkim-* flags ask for, or nil.
func loadDKIM(f sendFlags) (*mail.DKIM, error) {
	if f.dkimKey == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f.dkimKey)
	if err != nil {
		return nil, fmt.Errorf("--dkim-key: %w", err)
	}
	return mail.NewDKIM(pem, f.dkimDomain, f.dkimSelector)
}
