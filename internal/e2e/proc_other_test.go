//go:build !linux

package e2e

import (
	"os"
	"os/exec"
)

var sigterm = os.Interrupt

func setProcAttr(*exec.Cmd) {}
