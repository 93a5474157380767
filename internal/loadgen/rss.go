package loadgen

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// procStatusKB is a "Name:  N kB" field of /proc/<pid>/status in kB; 0
// when unreadable (not Linux, process gone).
func procStatusKB(pid int, name string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(name+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(string(f[0]), 10, 64)
		return n
	}
	return 0
}

// rssUse is a process's resident memory before a phase and at its peak
// during it, in kB.
type rssUse struct {
	before, peak int64
}

// growthMB is the peak's growth over before, in MB (10^6 bytes).
func (u rssUse) growthMB() float64 { return float64(u.peak-u.before) * 1024 / 1e6 }

// rssMeter follows a process's resident memory: it resets the kernel's
// high-water mark (VmHWM, by writing 5 to /proc/<pid>/clear_refs) and
// samples VmRSS every 10 ms; the peak is the larger of the highest sample
// and, when the reset worked, VmHWM at stop (which catches a peak between
// samples).
type rssMeter struct {
	pid    int
	before int64
	hwm    bool // the high-water mark was reset: VmHWM is this phase's
	stopc  chan struct{}
	wg     sync.WaitGroup
	peak   int64
}

func startRSS(pid int) *rssMeter {
	m := &rssMeter{pid: pid, stopc: make(chan struct{})}
	m.before = procStatusKB(pid, "VmRSS")
	m.hwm = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) == nil
	m.peak = m.before
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stopc:
				return
			case <-t.C:
				m.peak = max(m.peak, procStatusKB(pid, "VmRSS"))
			}
		}
	}()
	return m
}

func (m *rssMeter) stop() rssUse {
	close(m.stopc)
	m.wg.Wait()
	peak := m.peak
	if m.hwm {
		peak = max(peak, procStatusKB(m.pid, "VmHWM"))
	}
	return rssUse{before: m.before, peak: peak}
}
