//go:build !linux

package redisserver

import (
	"os"
	"os/exec"
)

var sigterm = os.Interrupt

func setProcAttr(*exec.Cmd) {}
