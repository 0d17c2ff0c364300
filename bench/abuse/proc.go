package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// procSampler follows the proxy process during an attack: VmRSS every
// interval (its peak), VmHWM and CPU time at the start and the end. Past
// capKB it stops the attack (cancel) so one runaway proxy cannot take the
// machine's memory.
type procSampler struct {
	pid   int
	start time.Time
	capKB int64

	mu       sync.Mutex
	baseRSS  int64
	peakRSS  int64
	peakT    float64
	lastRSS  int64
	hwm      int64
	cpu0     int64
	cpu1     int64
	exitedAt *float64
	capHit   *float64
}

func newProcSampler(pid int, capKB int64, start time.Time) (*procSampler, error) {
	s := &procSampler{pid: pid, capKB: capKB, start: start}
	rss, _, err := readMem(pid)
	if err != nil {
		return nil, err
	}
	ticks, err := readTicks(pid)
	if err != nil {
		return nil, err
	}
	s.baseRSS, s.peakRSS, s.lastRSS, s.cpu0, s.cpu1 = rss, rss, rss, ticks, ticks
	return s, nil
}

// run samples until ctx ends; cancel stops the attack when the proxy
// exits or passes the cap.
func (s *procSampler) run(ctx context.Context, every time.Duration, cancel func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sample(cancel)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *procSampler) sample(cancel func()) {
	rss, hwm, err := readMem(s.pid)
	ticks, terr := readTicks(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || terr != nil {
		if s.exitedAt == nil {
			t := time.Since(s.start).Seconds()
			s.exitedAt = &t
			cancel()
		}
		return
	}
	s.lastRSS, s.hwm, s.cpu1 = rss, hwm, ticks
	if rss > s.peakRSS {
		s.peakRSS, s.peakT = rss, time.Since(s.start).Seconds()
	}
	if s.capKB > 0 && rss > s.capKB && s.capHit == nil {
		t := time.Since(s.start).Seconds()
		s.capHit = &t
		cancel()
	}
}

// current returns the latest sampled VmRSS in KiB.
func (s *procSampler) current() int64 {
	s.sample(func() {})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastRSS
}

type procStats struct {
	PID        int      `json:"pid"`
	RSSStartKB int64    `json:"rss_start_kb"`
	RSSPeakKB  int64    `json:"rss_peak_kb"`
	RSSPeakAt  float64  `json:"rss_peak_at"`
	RSSEndKB   int64    `json:"rss_end_kb"`
	HWMKB      int64    `json:"hwm_kb"`
	CPUSeconds float64  `json:"cpu_seconds"`
	ExitedAt   *float64 `json:"exited_at,omitempty"`
	CapKB      int64    `json:"cap_kb"`
	CapHitAt   *float64 `json:"cap_hit_at,omitempty"`
}

func (s *procSampler) stats() procStats {
	s.sample(func() {})
	s.mu.Lock()
	defer s.mu.Unlock()
	return procStats{
		PID:        s.pid,
		RSSStartKB: s.baseRSS,
		RSSPeakKB:  max(s.peakRSS, s.hwm),
		RSSPeakAt:  s.peakT,
		RSSEndKB:   s.lastRSS,
		HWMKB:      s.hwm,
		CPUSeconds: float64(s.cpu1-s.cpu0) / clockTicks,
		ExitedAt:   s.exitedAt,
		CapKB:      s.capKB,
		CapHitAt:   s.capHit,
	}
}

// readMem returns VmRSS and VmHWM of pid in KiB.
func readMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			rss = kbField(line)
		case strings.HasPrefix(line, "VmHWM:"):
			hwm = kbField(line)
		case strings.HasPrefix(line, "State:") && strings.Contains(line, "zombie"):
			return 0, 0, fmt.Errorf("pid %d is a zombie", pid)
		}
	}
	return rss, hwm, nil
}

func kbField(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n
}

// readTicks returns utime+stime of pid in clock ticks.
func readTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields start after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is the state (field 3); utime and stime are fields 14 and 15.
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + st, nil
}
