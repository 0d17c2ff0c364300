package upgrade

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// WritePIDFile writes pid to path atomically: into a new file beside it,
// then renamed over it, so that a reader (systemd's PIDFile=, a script's
// kill $(cat …)) sees the old pid or the new one, never an empty or
// half-written file.
func WritePIDFile(path string, pid int) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	tmp := f.Name()
	_, err = f.WriteString(strconv.Itoa(pid) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// RemovePIDFile removes path if it still names pid: a process that
// handed its sockets over leaves its successor's pid in place.
func RemovePIDFile(path string, pid int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("pid file: %w", err)
	}
	if string(bytes.TrimSpace(b)) != strconv.Itoa(pid) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}
