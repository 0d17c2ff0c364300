package upgrade

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sightline.pid")
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := WritePIDFile(path, 100); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "100\n" {
		t.Errorf("pid file %q, want %q", got, "100\n")
	}
	// An upgrade rewrites it: the old process then leaves it alone.
	if err := WritePIDFile(path, 200); err != nil {
		t.Fatal(err)
	}
	if err := RemovePIDFile(path, 100); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "200\n" {
		t.Errorf("pid file %q after the old process exited, want %q", got, "200\n")
	}
	if err := RemovePIDFile(path, 200); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid file still there after its process exited: %v", err)
	}
	if err := RemovePIDFile(path, 200); err != nil {
		t.Errorf("removing a missing pid file: %v", err)
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	if err := WritePIDFile(filepath.Join(t.TempDir(), "missing", "x.pid"), 1); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Notify("MAINPID=42"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "MAINPID=42" {
		t.Errorf("systemd got %q, want %q", got, "MAINPID=42")
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Errorf("with no service manager: %v", err)
	}
}
