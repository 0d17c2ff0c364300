package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when any goroutine outlives the tests (a
// watcher's, fsnotify's): every watcher the tests start is closed.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, 5*time.Second)
}

// watcherGoroutines mark the goroutines of a Watcher and of fsnotify.
var watcherGoroutines = []string{"config/watch.(*Watcher)", "fsnotify.(*inotify).readEvents"}

// testDebounce is short, to keep the tests quick, and long enough for the
// steps of one test action to fall into one window.
const testDebounce = 50 * time.Millisecond

// quiet is how long a test waits to be sure that no call comes.
const quiet = 10 * testDebounce

// callTimeout bounds the wait for a call that must come.
const callTimeout = 5 * time.Second

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start watches files and returns a channel that receives one value per
// call of onChange. The watcher is closed when the test ends.
func start(t *testing.T, files []string, opts Options) (*Watcher, <-chan struct{}) {
	t.Helper()
	calls := make(chan struct{}, 100)
	if opts.Debounce == 0 {
		opts.Debounce = testDebounce
	}
	w, err := New(files, func() { calls <- struct{}{} }, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, calls
}

// wantCalls waits for n calls, then makes sure that no more come.
func wantCalls(t *testing.T, calls <-chan struct{}, n int) {
	t.Helper()
	deadline := time.After(callTimeout)
	for i := range n {
		select {
		case <-calls:
		case <-deadline:
			t.Fatalf("got %d calls, want %d", i, n)
		}
	}
	select {
	case <-calls:
		t.Fatalf("got more than %d calls", n)
	case <-time.After(quiet):
	}
}

// kubeConfigMap lays dir out as a mounted ConfigMap holding one file:
// name -> ..data/name, ..data -> ..<version>/, and returns name's path.
func kubeConfigMap(t *testing.T, dir, name, version, content string) string {
	t.Helper()
	write(t, filepath.Join(dir, ".."+version, name), content)
	must(t, os.Symlink(".."+version, filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	return filepath.Join(dir, name)
}

// kubeSwap updates a ConfigMap laid out by kubeConfigMap the way the
// kubelet does: a new version directory, a temporary link to it renamed
// over ..data, the old version removed.
func kubeSwap(t *testing.T, dir, name, from, to, content string) {
	t.Helper()
	write(t, filepath.Join(dir, ".."+to, name), content)
	must(t, os.Symlink(".."+to, filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, ".."+from)))
}

func TestWatch(t *testing.T) {
	tests := []struct {
		name string
		// setup writes the files in dir and returns those to watch.
		setup func(t *testing.T, dir string) []string
		// change acts on the files once they are watched.
		change func(t *testing.T, dir string)
		want   int // calls
	}{
		{
			name: "written in place",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "a: 1\n")
				return []string{filepath.Join(dir, "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "sightline.yaml"), "a: 2\n") },
			want:   1,
		},
		{
			name: "renamed over, as editors save",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "a: 1\n")
				return []string{filepath.Join(dir, "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, ".sightline.yaml.swp"), "a: 2\n")
				must(t, os.Rename(filepath.Join(dir, ".sightline.yaml.swp"), filepath.Join(dir, "sightline.yaml")))
			},
			want: 1,
		},
		{
			name: "an included file changes",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "include: [conf.d/*.yaml]\n")
				write(t, filepath.Join(dir, "conf.d", "clusters.yaml"), "clusters: []\n")
				return []string{filepath.Join(dir, "sightline.yaml"), filepath.Join(dir, "conf.d", "clusters.yaml")}
			},
			change: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "conf.d", "clusters.yaml"), "clusters: [{name: c}]\n")
			},
			want: 1,
		},
		{
			name: "a config file appears beside an included one",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "include: [conf.d/*.yaml]\n")
				write(t, filepath.Join(dir, "conf.d", "a.yaml"), "clusters: []\n")
				return []string{filepath.Join(dir, "sightline.yaml"), filepath.Join(dir, "conf.d", "a.yaml")}
			},
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "conf.d", "b.yaml"), "clusters: []\n") },
			want:   1,
		},
		{
			name: "a watched directory gets its first config file",
			setup: func(t *testing.T, dir string) []string {
				must(t, os.Mkdir(filepath.Join(dir, "conf.d"), 0o755))
				return []string{filepath.Join(dir, "conf.d")}
			},
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "conf.d", "a.yml"), "clusters: []\n") },
			want:   1,
		},
		{
			name: "a file removed",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "conf.d", "a.yaml"), "clusters: []\n")
				return []string{filepath.Join(dir, "conf.d", "a.yaml")}
			},
			change: func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, "conf.d", "a.yaml"))) },
			want:   1,
		},
		{
			name: "saved without a change, touched and chmod-ed",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "a: 1\n")
				return []string{filepath.Join(dir, "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "sightline.yaml")
				write(t, p, "a: 1\n")
				must(t, os.Chtimes(p, time.Now(), time.Now().Add(time.Hour)))
				must(t, os.Chmod(p, 0o600))
			},
			want: 0,
		},
		{
			name: "other files in the directory",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "a: 1\n")
				return []string{filepath.Join(dir, "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "access.log"), "{}\n")
				write(t, filepath.Join(dir, "notes.txt"), "x\n")
				write(t, filepath.Join(dir, "sightline.yaml~"), "a: 2\n")
			},
			want: 0,
		},
		{
			name: "a Kubernetes ConfigMap updated",
			setup: func(t *testing.T, dir string) []string {
				return []string{kubeConfigMap(t, dir, "sightline.yaml", "v1", "a: 1\n")}
			},
			change: func(t *testing.T, dir string) { kubeSwap(t, dir, "sightline.yaml", "v1", "v2", "a: 2\n") },
			want:   1,
		},
		{
			name: "a Kubernetes ConfigMap updated without a change",
			setup: func(t *testing.T, dir string) []string {
				return []string{kubeConfigMap(t, dir, "sightline.yaml", "v1", "a: 1\n")}
			},
			change: func(t *testing.T, dir string) { kubeSwap(t, dir, "sightline.yaml", "v1", "v2", "a: 1\n") },
			want:   0,
		},
		{
			name: "a link's target edited where it lives",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "srv", "real.yaml"), "a: 1\n")
				must(t, os.Mkdir(filepath.Join(dir, "etc"), 0o755))
				must(t, os.Symlink(filepath.Join(dir, "srv", "real.yaml"), filepath.Join(dir, "etc", "sightline.yaml")))
				return []string{filepath.Join(dir, "etc", "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) { write(t, filepath.Join(dir, "srv", "real.yaml"), "a: 2\n") },
			want:   1,
		},
		{
			name: "a link pointed elsewhere",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "v1.yaml"), "a: 1\n")
				write(t, filepath.Join(dir, "v2.yaml"), "a: 2\n")
				must(t, os.Symlink("v1.yaml", filepath.Join(dir, "sightline.yaml")))
				return []string{filepath.Join(dir, "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) {
				must(t, os.Symlink("v2.yaml", filepath.Join(dir, "tmp-link")))
				must(t, os.Rename(filepath.Join(dir, "tmp-link"), filepath.Join(dir, "sightline.yaml")))
			},
			want: 1,
		},
		{
			name: "a burst of writes",
			setup: func(t *testing.T, dir string) []string {
				write(t, filepath.Join(dir, "sightline.yaml"), "a: 0\n")
				return []string{filepath.Join(dir, "sightline.yaml")}
			},
			change: func(t *testing.T, dir string) {
				for i := range 5 {
					write(t, filepath.Join(dir, "sightline.yaml"), fmt.Sprintf("a: %d\n", i+1))
					time.Sleep(testDebounce / 10)
				}
			},
			want: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			files := tt.setup(t, dir)
			// The burst must fit in one debounce window even on a busy
			// machine: give it room.
			_, calls := start(t, files, Options{Debounce: 4 * testDebounce})
			tt.change(t, dir)
			wantCalls(t, calls, tt.want)
		})
	}
}

// TestKubernetesSwapsAgain checks that the watch follows ..data to each
// new version, not only the first.
func TestKubernetesSwapsAgain(t *testing.T) {
	dir := t.TempDir()
	file := kubeConfigMap(t, dir, "sightline.yaml", "v1", "a: 1\n")
	_, calls := start(t, []string{file}, Options{})
	for i, v := range []string{"v2", "v3", "v4"} {
		kubeSwap(t, dir, "sightline.yaml", "v"+fmt.Sprint(i+1), v, "a: "+v+"\n")
		wantCalls(t, calls, 1)
	}
}

func TestSetFiles(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "sightline.yaml")
	old := filepath.Join(dir, "a", "old.yaml")
	added := filepath.Join(dir, "b", "new.yaml")
	write(t, main, "a: 1\n")
	write(t, old, "a: 1\n")
	write(t, added, "a: 1\n")
	w, calls := start(t, []string{main, old}, Options{})

	w.SetFiles([]string{main, added}, nil)
	if got, want := w.Files(), []string{main, added}; !slices.Equal(got, want) {
		t.Fatalf("Files() = %v, want %v", got, want)
	}
	write(t, old, "a: 2\n") // no longer watched
	wantCalls(t, calls, 0)
	write(t, added, "a: 2\n") // watched in a directory that was not
	wantCalls(t, calls, 1)
}

// TestSetFilesKeepsLastSeen changes a file while a reload (here: nothing)
// reads it: SetFiles must not take the new content as seen, or the change
// is lost.
func TestSetFilesKeepsLastSeen(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "sightline.yaml")
	write(t, main, "a: 1\n")
	w, calls := start(t, []string{main}, Options{Debounce: 1 * time.Second})
	write(t, main, "a: 2\n")
	w.SetFiles([]string{main}, nil) // well before the debounce ends
	wantCalls(t, calls, 1)
}

// TestSeen changes files after the caller read them and before the
// watcher is told of them: no event of that change reaches the watcher,
// and the content it reads then is not what the caller loaded. With Seen,
// the change is found anyway, once; content equal to Seen is no change.
func TestSeen(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "sightline.yaml")
	added := filepath.Join(dir, "conf.d", "added.yaml")
	write(t, main, "a: 1\n")
	write(t, added, "b: 1\n")
	loaded := Seen{main: Hash([]byte("a: 1\n")), added: Hash([]byte("b: 1\n"))}

	write(t, main, "a: 2\n")
	w, calls := start(t, []string{main}, Options{Seen: Seen{main: loaded[main]}})
	wantCalls(t, calls, 1)

	// The reload read main's new content and a new include; the include
	// changes before SetFiles.
	write(t, added, "b: 2\n")
	w.SetFiles([]string{main, added}, Seen{main: Hash([]byte("a: 2\n")), added: loaded[added]})
	wantCalls(t, calls, 1)

	// Seen equal to the files: nothing to do.
	w.SetFiles([]string{main, added}, Seen{main: Hash([]byte("a: 2\n")), added: Hash([]byte("b: 2\n"))})
	wantCalls(t, calls, 0)
}

// TestChangeDuringCallback makes changes while onChange runs: they must
// lead to exactly one more call, after it returns, never to a second call
// at the same time.
func TestChangeDuringCallback(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "sightline.yaml")
	write(t, main, "a: 0\n")
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	var running, overlapped atomic.Int32
	w, err := New([]string{main}, func() {
		if running.Add(1) > 1 {
			overlapped.Store(1)
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
	}, Options{Debounce: testDebounce})
	must(t, err)
	defer w.Close()

	write(t, main, "a: 1\n")
	select {
	case <-entered:
	case <-time.After(callTimeout):
		t.Fatal("no call")
	}
	for i := range 3 {
		write(t, main, fmt.Sprintf("a: %d\n", i+2))
		time.Sleep(2 * testDebounce) // each a change of its own
	}
	release <- struct{}{}
	select {
	case <-entered:
	case <-time.After(callTimeout):
		t.Fatal("no call after the first returned")
	}
	release <- struct{}{}
	select {
	case <-entered:
		t.Fatal("a third call for changes the second already saw")
	case <-time.After(quiet):
	}
	if overlapped.Load() != 0 {
		t.Error("calls overlapped")
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "sightline.yaml")
	write(t, main, "a: 1\n")
	w, calls := start(t, []string{main}, Options{})
	write(t, main, "a: 2\n")
	wantCalls(t, calls, 1)

	write(t, main, "a: 3\n")
	must(t, w.Close())
	for len(calls) > 0 { // made before Close returned, if the machine is slow
		<-calls
	}
	write(t, main, "a: 4\n")
	wantCalls(t, calls, 0)
	must(t, w.Close())          // idempotent
	w.SetFiles([]string{}, nil) // a no-op once closed
	if leaked := leakcheck.Wait(callTimeout, watcherGoroutines...); leaked != "" {
		t.Fatalf("goroutines left after Close:\n%s", leaked)
	}
}

// TestPolling checks the ways the watcher does without file events.
func TestPolling(t *testing.T) {
	broken := func() (*fsnotify.Watcher, error) { return nil, errors.New("too many open files") }
	tests := []struct {
		name    string
		events  func() (*fsnotify.Watcher, error)
		poll    time.Duration
		wantErr bool
	}{
		{name: "no events: polls", events: broken, poll: 0},
		{name: "no events, polling refused: fails", events: broken, poll: -1, wantErr: true},
		{name: "polls besides events", poll: testDebounce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.events != nil {
				saved := newFSWatcher
				newFSWatcher = tt.events
				t.Cleanup(func() { newFSWatcher = saved })
			}
			dir := t.TempDir()
			main := filepath.Join(dir, "sightline.yaml")
			write(t, main, "a: 1\n")
			calls := make(chan struct{}, 10)
			w, err := New([]string{main}, func() { calls <- struct{}{} }, Options{Debounce: testDebounce, PollInterval: tt.poll})
			if tt.wantErr {
				if err == nil {
					w.Close()
					t.Fatal("New succeeded without file events or polling")
				}
				return
			}
			must(t, err)
			defer w.Close()
			write(t, main, "a: 2\n")
			wantCalls(t, calls, 1)
		})
	}
}

// TestPollingSeesWhatEventsMiss changes a file where no event can tell:
// in a directory that is not watched, reached through a link to a
// directory, which is followed when the watch is set but not afterwards.
func TestPollingSeesWhatEventsMiss(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "releases", "1", "sightline.yaml"), "a: 1\n")
	write(t, filepath.Join(dir, "releases", "2", "sightline.yaml"), "a: 2\n")
	must(t, os.Symlink(filepath.Join(dir, "releases", "1"), filepath.Join(dir, "current")))
	file := filepath.Join(dir, "current", "sightline.yaml")
	swap := func() {
		must(t, os.Symlink(filepath.Join(dir, "releases", "2"), filepath.Join(dir, "next")))
		must(t, os.Rename(filepath.Join(dir, "next"), filepath.Join(dir, "current")))
	}

	_, calls := start(t, []string{file}, Options{PollInterval: 2 * testDebounce})
	swap()
	wantCalls(t, calls, 1)
}

func TestNewNilCallback(t *testing.T) {
	if w, err := New(nil, nil, Options{}); err == nil {
		w.Close()
		t.Fatal("New accepted a nil onChange")
	}
}
