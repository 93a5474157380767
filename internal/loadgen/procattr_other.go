//go:build !linux

package loadgen

import "os/exec"

func setProcAttr(*exec.Cmd) {}
