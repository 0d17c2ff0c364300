package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testtool"
)

// updateScreenshot makes TestStatusPage write its screenshot to
// docs/status-page.png, the picture the README shows:
//
//	go test ./e2e -run TestStatusPage -update-screenshot
var updateScreenshot = flag.Bool("update-screenshot", false, "write the status page screenshot to docs/status-page.png")

// statusJSON is the part of the admin's /status.json the test reads.
type statusJSON struct {
	Listeners []struct {
		Name    string    `json:"name"`
		History []float64 `json:"history"`
	} `json:"listeners"`
	Clusters []struct {
		Name    string    `json:"name"`
		History []float64 `json:"history"`
		Hosts   []struct {
			Address  string  `json:"address"`
			RqPerSec float64 `json:"rq_per_sec"`
		} `json:"hosts"`
	} `json:"clusters"`
}

// TestStatusPage opens the admin status page in headless Chromium while
// traffic runs through the proxy, after the page has refreshed itself from
// /status.json, and checks that it shows every listener, cluster and host;
// then takes a 1280×900 screenshot.
func TestStatusPage(t *testing.T) {
	chromium := testtool.Look(t, "chromium")
	env := startObservedEnv(t, "")

	// Wait for a few seconds of history, so that rates and sparklines
	// have something to show; for the README's picture, for more.
	history := 4
	if *updateScreenshot {
		history = 40
	}
	var st statusJSON
	err := eventually(time.Duration(history)*time.Second+30*time.Second, func() error {
		code, body := env.p.adminGet("/status.json")
		if code != 200 {
			return fmt.Errorf("/status.json: %d", code)
		}
		st = statusJSON{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			return err
		}
		for _, c := range st.Clusters {
			if c.Name == "primary" && len(c.History) >= history {
				return nil
			}
		}
		return fmt.Errorf("no history of cluster primary yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	env.traffic.check(t)

	url := "http://" + env.p.admin + "/"
	// The page fetches status.json at once and every 2s after: 5s of
	// virtual time is the first load and two refreshes.
	dom := runChromium(t, chromium, "--virtual-time-budget=5000", "--dump-dom", url)

	var want []string
	for _, l := range st.Listeners {
		want = append(want, l.Name)
	}
	hosts := 0
	for _, c := range st.Clusters {
		want = append(want, c.Name)
		for _, h := range c.Hosts {
			want = append(want, h.Address)
			hosts++
		}
	}
	// The hosts the test started, whatever /status.json says.
	for _, b := range env.backends {
		want = append(want, b.Addr)
	}
	want = append(want, env.dead, env.canary.Addr, env.shadow.Addr, env.web)
	if hosts != len(env.backends)+4 {
		t.Errorf("/status.json lists %d hosts, want %d", hosts, len(env.backends)+4)
	}
	for _, w := range want {
		if !strings.Contains(dom, ">"+w+"<") {
			t.Errorf("the status page does not show %q", w)
		}
	}
	m := regexp.MustCompile(`data-refreshes="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the page has no refresh counter:\n%s", tail(dom, 3000))
	}
	if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Errorf("the page fetched status.json %d times in 5s, want the first load and at least one refresh", n)
	}
	if strings.Contains(dom, `class="stale"`) {
		t.Errorf("the page says its data is stale:\n%s", tail(dom, 3000))
	}
	// Which hosts are up depends on health checking and outlier detection;
	// the backends that serve are up either way.
	if !strings.Contains(dom, ">UP<") {
		t.Errorf("the page shows no host UP")
	}
	if !strings.Contains(dom, "<svg") || !strings.Contains(dom, "<polyline") {
		t.Errorf("the page has no sparkline")
	}

	shot := filepath.Join(t.TempDir(), "status-page.png")
	runChromium(t, chromium, "--virtual-time-budget=5000", "--hide-scrollbars", "--window-size=1280,900", "--screenshot="+shot, url)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if sz := img.Bounds().Size(); sz != (image.Point{1280, 900}) {
		t.Errorf("the screenshot is %v, want 1280x900", sz)
	}
	if n := colors(img); n < 8 {
		t.Errorf("the screenshot has %d colours: a blank page?", n)
	}
	if *updateScreenshot {
		dst := filepath.Join(repoRoot, "docs", "status-page.png")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", dst)
	}
}

// runChromium runs headless Chromium with a profile of its own and returns
// its stdout. Chromium's processes are killed as a group if it hangs.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
	}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, tail(errb.String(), 3000))
	}
	return out.String()
}

// colors counts the distinct colours of img, up to 1000.
func colors(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= 1000 {
				return len(seen)
			}
		}
	}
	return len(seen)
}
