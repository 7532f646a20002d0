package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// CPU over the push phase. A rate means little without what it cost
// and what else ran: the server's CPU a push says how far the machine
// would take it, diaryload's own what the load took from a server on
// the same machine, and the machine's time stolen by its hypervisor
// how much a shared machine's neighbours moved the figures. Read from
// Linux's /proc (its clock ticks are USER_HZ, 100 a second), and from
// the server's metrics for a server diaryload did not start; absent
// where neither is there.

// cpuReport is the CPU spent while the navigators pushed.
type cpuReport struct {
	// Of all the cores' time of the machine diaryload runs on (the
	// server's too when it is local): running anything, and stolen by
	// the hypervisor for other machines (0 to 1).
	MachineCores int      `json:"machine_cores,omitempty"`
	MachineBusy  *float64 `json:"machine_busy,omitempty"`
	MachineSteal *float64 `json:"machine_steal,omitempty"`

	LoadSeconds *float64 `json:"diaryload_seconds,omitempty"`

	ServerSeconds   *float64 `json:"server_seconds,omitempty"`
	ServerSource    string   `json:"server_source,omitempty"`
	ServerMsPerPush *float64 `json:"server_ms_per_push,omitempty"`
}

// cpuMark is one reading of the counters; a counter that could not be
// read is negative (or nil for the machine's).
type cpuMark struct {
	machine []uint64 // /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal
	cores   int
	self    float64
	server  float64
}

const userHZ = 100

// markCPU reads the counters now.
func markCPU(ctx context.Context, t *target) cpuMark {
	m := cpuMark{self: -1, server: -1}
	m.machine, m.cores = readProcStat()
	if s, err := processCPU(os.Getpid()); err == nil {
		m.self = s
	}
	switch {
	case t.child != nil:
		if s, err := processCPU(t.child.cmd.Process.Pid); err == nil {
			m.server = s
		}
	case t.metrics != nil:
		if s, ok := t.metrics.cpuSeconds(ctx); ok {
			m.server = s
		}
	}
	return m
}

// cpuSince is what was spent from a to b, by pushes acknowledged
// pushes; nil when nothing could be read.
func cpuSince(a, b cpuMark, t *target, pushes int) *cpuReport {
	r := &cpuReport{}
	some := false
	if a.machine != nil && b.machine != nil {
		var d [8]float64
		total := 0.0
		for i := range d {
			d[i] = float64(b.machine[i] - a.machine[i])
			total += d[i]
		}
		if total > 0 {
			busy := (d[0] + d[1] + d[2] + d[5] + d[6]) / total
			steal := d[7] / total
			r.MachineCores, r.MachineBusy, r.MachineSteal = b.cores, round3(busy), round3(steal)
			some = true
		}
	}
	if a.self >= 0 && b.self >= 0 {
		r.LoadSeconds = round3(b.self - a.self)
		some = true
	}
	if a.server >= 0 && b.server >= 0 {
		r.ServerSeconds = round3(b.server - a.server)
		r.ServerSource = "/proc of the diaryd process"
		if t.child == nil {
			r.ServerSource = metricCPU + " from metrics"
		}
		if pushes > 0 {
			r.ServerMsPerPush = round3(*r.ServerSeconds * 1000 / float64(pushes))
		}
		some = true
	}
	if !some {
		return nil
	}
	return r
}

func round3(v float64) *float64 {
	v = math.Round(v*1000) / 1000
	return &v
}

// readProcStat returns the first eight counters of /proc/stat's "cpu"
// line and the number of cores, or nil where there is no /proc/stat.
func readProcStat() ([]uint64, int) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, 0
	}
	var total []uint64
	cores := 0
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "cpu" && len(f) >= 9:
			total = make([]uint64, 8)
			for i := range total {
				v, err := strconv.ParseUint(f[i+1], 10, 64)
				if err != nil {
					return nil, 0
				}
				total[i] = v
			}
		case strings.HasPrefix(f[0], "cpu"):
			cores++
		}
	}
	return total, cores
}

// processCPU returns the CPU time, user and system, a process has spent,
// in seconds.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command's name, in parentheses, may hold spaces; the fields
	// after it start with the state (the third).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, err1 := strconv.ParseUint(f[utime], 10, 64)
	k, err2 := strconv.ParseUint(f[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU times %q %q", pid, f[utime], f[stime])
	}
	return float64(u+k) / userHZ, nil
}
