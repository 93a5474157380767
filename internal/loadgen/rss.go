package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memStatus is a process's resident memory from /proc/<pid>/status.
type memStatus struct {
	RSS uint64 // VmRSS, bytes
	HWM uint64 // VmHWM (peak RSS since start or the last resetPeak), bytes
}

// procMem reads VmRSS and VmHWM of pid (Linux only).
func procMem(pid int) (memStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memStatus{}, err
	}
	return parseProcStatus(b)
}

func parseProcStatus(b []byte) (memStatus, error) {
	var m memStatus
	var rss, hwm bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return memStatus{}, fmt.Errorf("/proc status: %s: %q", name, val)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return memStatus{}, fmt.Errorf("/proc status: %s: %w", name, err)
		}
		if name == "VmRSS" {
			m.RSS, rss = kb<<10, true
		} else {
			m.HWM, hwm = kb<<10, true
		}
	}
	if !rss || !hwm {
		return memStatus{}, errors.New("/proc status: no VmRSS or VmHWM")
	}
	return m, nil
}

// resetPeak resets pid's VmHWM to its current RSS (writing 5 to
// /proc/<pid>/clear_refs, Linux 4.0 and later; the harness owns the
// process).
func resetPeak(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// rssPeak is the peak RSS of a process over a phase: VmHWM after a reset
// at the start when the kernel allows the reset, else the largest VmRSS
// sampled every 20 ms (which can miss a shorter peak).
type rssPeak struct {
	Before memStatus // at the start
	Peak   uint64    // bytes
	After  memStatus // at the end
	// FromHWM says Peak is the kernel's VmHWM (exact), not a sample.
	FromHWM bool
	Err     error // nothing could be read
}

type rssMeter struct {
	pid      int
	before   memStatus
	err      error
	reset    bool
	stopc    chan struct{}
	wg       sync.WaitGroup
	maxRSS   uint64
	sampling sync.Mutex
}

// startRSS starts measuring pid's peak RSS.
func startRSS(pid int) *rssMeter {
	m := &rssMeter{pid: pid, stopc: make(chan struct{})}
	m.before, m.err = procMem(pid)
	if m.err != nil {
		return m
	}
	m.reset = resetPeak(pid) == nil
	m.maxRSS = m.before.RSS
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stopc:
				return
			case <-t.C:
				if s, err := procMem(pid); err == nil {
					m.sampling.Lock()
					m.maxRSS = max(m.maxRSS, s.RSS)
					m.sampling.Unlock()
				}
			}
		}
	}()
	return m
}

func (m *rssMeter) stop() rssPeak {
	if m.err != nil {
		return rssPeak{Err: m.err}
	}
	close(m.stopc)
	m.wg.Wait()
	r := rssPeak{Before: m.before}
	after, err := procMem(m.pid)
	if err != nil {
		return rssPeak{Err: err}
	}
	r.After = after
	r.Peak = max(m.maxRSS, after.RSS)
	if m.reset {
		r.Peak, r.FromHWM = max(r.Peak, after.HWM), true
	}
	return r
}

// mb is bytes in MB (10^6), for the report.
func mb(b uint64) float64 { return float64(b) / 1e6 }
