package loadgen

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat CPU times (100 on
// every Linux that matters).
const clockTick = 100

// procCPU is the CPU time (user + system) a process has used, from
// /proc/<pid>/stat; 0 when unreadable (not Linux, process gone).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / clockTick
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuShare is how many cores each party kept busy during a phase.
type cpuShare struct {
	server, redis, generator float64
}

// cpuMeter measures the cores used by a server process, Redis and the
// generator between start and stop.
type cpuMeter struct {
	serverPID, redisPID int
	t0                  time.Time
	s0, r0, g0          time.Duration
}

func startCPU(serverPID, redisPID int) *cpuMeter {
	return &cpuMeter{serverPID: serverPID, redisPID: redisPID, t0: time.Now(),
		s0: procCPU(serverPID), r0: procCPU(redisPID), g0: selfCPU()}
}

func (m *cpuMeter) stop() cpuShare {
	wall := time.Since(m.t0).Seconds()
	if wall <= 0 {
		return cpuShare{}
	}
	return cpuShare{
		server:    (procCPU(m.serverPID) - m.s0).Seconds() / wall,
		redis:     (procCPU(m.redisPID) - m.r0).Seconds() / wall,
		generator: (selfCPU() - m.g0).Seconds() / wall,
	}
}
