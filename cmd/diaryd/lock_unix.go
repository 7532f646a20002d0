//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockData takes the data directory's lock file (<dir>/diarysync.lock)
// for as long as the process runs or until release: "diaryd serve" holds
// it, and "diaryd migrate" refuses to copy a study whose server still
// runs. The lock is an flock, which the kernel drops when the process
// ends however it ends (SIGKILL included), so a crashed server leaves no
// stale lock.
func lockData(dir string) (release func(), err error) {
	path := filepath.Join(dir, "diarysync.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			return nil, fmt.Errorf("a diaryd server (pid %s) is using %s: stop it first", pid, dir)
		}
		return nil, fmt.Errorf("cannot lock %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
