// Package watch tells the proxy when its config files change, so that it
// can reload by itself (server.watch: true), as it does on SIGHUP.
//
// It watches the directories that hold the files rather than the files:
// editors save by writing a new file and renaming it over the old one, mv
// and configuration tools do the same, and Kubernetes updates a mounted
// ConfigMap by pointing a "..data" symlink at a new directory. A watch on
// the file itself would follow the replaced inode and see none of these.
//
// Events only say when to look. What decides is the files' content: after
// a quiet spell (the debounce, so that a save made of several writes and
// renames is one change) every file is read and hashed, and the callback
// runs only if a hash differs from the last one seen, or a config file
// appeared that an include glob may match. A save without a change, a
// chmod or a touch reloads nothing.
package watch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/tick"
)

// DefaultDebounce is how long the files must stay quiet before they are
// compared: longer than the gaps between the writes and renames of one
// save, short enough that a reload feels immediate.
const DefaultDebounce = 250 * time.Millisecond

// DefaultPollInterval is how often the files are compared when the kernel
// will not send file events (inotify limits reached): a slower, but sure,
// way to see every change.
const DefaultPollInterval = 2 * time.Second

// maxDelayFactor bounds how long events that keep coming can hold a
// comparison off: at most this many debounce periods after the first.
const maxDelayFactor = 4

// configExtensions are the file types an include glob can load; a new file
// of one of them in a watched directory may be a new include.
var configExtensions = []string{".yaml", ".yml", ".json"}

// Options tune a Watcher; the zero value is ready to use.
type Options struct {
	// Debounce is how long the files must stay quiet after an event before
	// they are compared. 0 means DefaultDebounce.
	Debounce time.Duration
	// PollInterval, when positive, also compares the files this often,
	// for file systems that send no events (NFS, some FUSE mounts). When
	// 0, the files are polled only if file events cannot be had, every
	// DefaultPollInterval; when negative, never, and New fails instead.
	PollInterval time.Duration
	// Log receives what the watcher cannot do (a directory it cannot
	// watch, a fall back to polling). The zero value logs nothing.
	Log zerolog.Logger
	// Seen holds the content the caller read of the files given to New,
	// as Hash computes it, by path as given: see Seen.
	Seen Seen
}

// Seen is the content a caller read of some files, by path as given
// (config.Config.FileHashes is one). A watcher compares a file in it with
// that content, not with what it reads itself when told of the file: a
// change made between the caller's read and New or SetFiles is then seen
// as the change it is, rather than taken as the content already loaded.
type Seen map[string][sha256.Size]byte

// Hash is the hash a Seen holds for a file whose content is data.
func Hash(data []byte) [sha256.Size]byte { return sha256.Sum256(data) }

// Watcher calls a function when the content of a set of files changes.
// Its methods are safe to call from any goroutine.
type Watcher struct {
	onChange func()
	debounce time.Duration
	log      zerolog.Logger
	fsw      *fsnotify.Watcher // nil when polling only

	mu     sync.Mutex
	closed bool
	files  []string               // absolute, as given
	dirs   []string               // absolute, given as directories to watch
	sums   map[string]fingerprint // last seen content, by file
	// interesting holds the paths whose events are worth a look: the
	// files, the links that lead to them and what they resolve to.
	interesting atomic.Pointer[map[string]bool]

	createdMu sync.Mutex
	created   map[string]bool // config files created since the last comparison

	poll    chan time.Duration // asks the event loop to poll at that interval
	look    chan struct{}      // cap 1: asks the event loop for a comparison
	compare chan struct{}      // cap 1: the loop asks the checker to compare
	done    chan struct{}
	wg      sync.WaitGroup
}

// newFSWatcher is fsnotify.NewBufferedWatcher, replaced in tests to see
// the fall back to polling.
var newFSWatcher = func() (*fsnotify.Watcher, error) { return fsnotify.NewBufferedWatcher(64) }

// New starts watching files, typically config.Config.Files: the main file
// and every file it includes. An entry that is a directory is watched for
// config files created in it, such as the directory of an include glob
// that matched nothing yet.
//
// onChange is called, on a goroutine of the watcher, each time the files
// have changed and then stayed quiet for the debounce. Calls never overlap:
// changes made while one runs lead to one more call after it returns. It
// should reload the config and give the watcher the new list of files with
// SetFiles; a long reload only delays the next call.
//
// New reads every file that opts.Seen does not hold, to know its content:
// for those, a change made after the caller read them and before New is
// seen only when the file changes again.
func New(files []string, onChange func(), opts Options) (*Watcher, error) {
	if onChange == nil {
		return nil, errors.New("watching config files: onChange is nil")
	}
	w := &Watcher{
		onChange: onChange,
		debounce: opts.Debounce,
		log:      opts.Log.With().Str("component", "config_watch").Logger(),
		sums:     map[string]fingerprint{},
		created:  map[string]bool{},
		poll:     make(chan time.Duration, 1),
		look:     make(chan struct{}, 1),
		compare:  make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	fsw, err := newFSWatcher()
	switch {
	case err == nil:
		w.fsw = fsw
	case opts.PollInterval < 0:
		return nil, fmt.Errorf("watching config files: %w", err)
	default:
		w.log.Warn().Err(err).Msg("no file events: polling config files instead")
		if opts.PollInterval == 0 {
			opts.PollInterval = DefaultPollInterval
		}
	}
	if opts.PollInterval > 0 {
		w.poll <- opts.PollInterval
	}
	w.SetFiles(files, opts.Seen)
	w.wg.Add(2)
	go w.loop()
	go w.checker()
	return w, nil
}

// SetFiles replaces the watched files, as after a reload that read other
// files (an include added or removed). A file in seen is compared with
// the content seen holds, the content the reload read. Any other keeps
// the content last seen if it was watched before, so that a change made
// while the reload was reading it is not lost, or is read now if it is
// new. After Close it does nothing.
func (w *Watcher) SetFiles(files []string, seen Seen) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.files, w.dirs = nil, nil
	sums := make(map[string]fingerprint, len(files))
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			abs = filepath.Clean(f)
		}
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			w.dirs = append(w.dirs, abs)
			continue
		}
		if slices.Contains(w.files, abs) {
			continue
		}
		w.files = append(w.files, abs)
		if h, ok := seen[f]; ok {
			sums[abs] = fingerprint{hash: h}
		} else if s, ok := w.sums[abs]; ok {
			sums[abs] = s
		} else {
			sums[abs] = sum(abs)
		}
	}
	w.sums = sums
	w.syncLocked()
	if len(seen) > 0 {
		// The events of a change made before the directories were
		// watched are lost: only a comparison finds it. It waits for
		// the debounce, as for an event: the change may be a save
		// still being written.
		select {
		case w.look <- struct{}{}:
		default: // a look is already asked for
		}
	}
}

// Files returns the watched files and directories, made absolute.
func (w *Watcher) Files() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append(slices.Clone(w.files), w.dirs...)
}

// Close stops watching. It waits for a call to onChange in progress to
// return, so onChange must not call it (from there, use go w.Close());
// after Close returns, onChange is not called again. Close is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.done)
	w.wg.Wait()
	if w.fsw != nil {
		return w.fsw.Close()
	}
	return nil
}

// loop turns file events and poll ticks into comparisons, debounced. It
// takes no lock that fsnotify calls are made under, so that the event
// reader of fsnotify never waits on it.
func (w *Watcher) loop() {
	defer w.wg.Done()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	var (
		timer   = time.NewTimer(time.Hour)
		pending bool      // timer armed
		first   time.Time // first event since the last comparison
		ticker  *tick.Ticker
		polls   <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	arm := func() {
		now := time.Now()
		if !pending {
			first, pending = now, true
		}
		wait := w.debounce
		if limit := first.Add(maxDelayFactor * w.debounce).Sub(now); wait > limit {
			wait = max(limit, 0)
		}
		timer.Reset(wait)
	}
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-events:
			if !ok {
				events, errs = nil, nil
				w.log.Warn().Msg("file events stopped: polling config files instead")
				w.startPolling(DefaultPollInterval)
				continue
			}
			if w.note(ev) {
				arm()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow lost events, and any other error may have: look.
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn().Err(err).Msg("watching config files")
			}
			arm()
		case d := <-w.poll:
			if ticker == nil {
				ticker = tick.NewTicker(d)
				polls = ticker.C
			}
		case <-polls:
			arm()
		case <-w.look:
			arm()
		case <-timer.C:
			pending = false
			select {
			case w.compare <- struct{}{}:
			default: // a comparison is already due
			}
		}
	}
}

// note records what ev says and reports whether it is worth a look.
func (w *Watcher) note(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	base := filepath.Base(name)
	if (*w.interesting.Load())[name] || strings.HasPrefix(base, "..") {
		// A watched file, a link to it, or Kubernetes' ..data swap.
		return true
	}
	if !slices.Contains(configExtensions, strings.ToLower(filepath.Ext(base))) {
		return false
	}
	if ev.Has(fsnotify.Create) {
		w.createdMu.Lock()
		w.created[name] = true
		w.createdMu.Unlock()
	}
	return true
}

// checker runs the comparisons and the callbacks, one at a time.
func (w *Watcher) checker() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case <-w.compare:
		}
		if !w.changed() {
			continue
		}
		select {
		case <-w.done:
			return
		default:
		}
		w.onChange()
	}
}

// changed compares the files with what was last seen and remembers what
// it finds. A config file created in a watched directory counts as a
// change while it exists, since it may match an include glob.
func (w *Watcher) changed() bool {
	w.createdMu.Lock()
	created := w.created
	w.created = map[string]bool{}
	w.createdMu.Unlock()

	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for _, f := range w.files {
		s := sum(f)
		if s != w.sums[f] {
			w.log.Debug().Str("file", f).Msg("config file changed")
			w.sums[f], changed = s, true
		}
	}
	for f := range created {
		if _, watched := w.sums[f]; watched {
			continue
		}
		if _, err := os.Stat(f); err == nil {
			w.log.Debug().Str("file", f).Msg("config file created")
			changed = true
		}
	}
	// A file that became a link, or a link that points elsewhere now,
	// moves what must be watched.
	w.syncLocked()
	return changed
}

// syncLocked watches the directories that hold the files, the links
// leading to them and their targets, and stops watching the others. w.mu
// must be held.
func (w *Watcher) syncLocked() {
	interesting := map[string]bool{}
	var want []string
	for _, d := range w.dirs {
		want = append(want, realPath(d))
	}
	for _, f := range w.files {
		for _, p := range chain(f) {
			interesting[p] = true
			// Watched by their real path: inotify knows directories, not
			// names, so two names of one directory would be one watch.
			want = append(want, realPath(filepath.Dir(p)))
		}
	}
	w.interesting.Store(&interesting)
	if w.fsw == nil {
		return
	}
	slices.Sort(want)
	want = slices.Compact(want)
	have := w.fsw.WatchList()
	for _, d := range have {
		if _, found := slices.BinarySearch(want, d); !found {
			// Gone already when the directory was removed.
			_ = w.fsw.Remove(d)
		}
	}
	failed := false
	for _, d := range want {
		if slices.Contains(have, d) {
			continue
		}
		if err := w.fsw.Add(d); err != nil {
			// A missing directory is watched again once a comparison
			// finds it back; until then its files read as missing.
			if !errors.Is(err, os.ErrNotExist) {
				w.log.Warn().Err(err).Str("dir", d).Msg("cannot watch config directory: polling")
				failed = true
			}
		}
	}
	if failed {
		w.startPolling(DefaultPollInterval)
	}
}

// startPolling asks the event loop to poll, unless it does already.
func (w *Watcher) startPolling(d time.Duration) {
	select {
	case w.poll <- d:
	default:
	}
}

// chain returns path and, when it is a symbolic link, every link it
// leads through and the file it resolves to.
func chain(path string) []string {
	out := []string{path}
	p := path
	for range 16 { // as many links as a path may reasonably hold
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
		out = append(out, p)
	}
	// A link anywhere in the directories (Kubernetes' ..data is one).
	if real, err := filepath.EvalSymlinks(path); err == nil && !slices.Contains(out, real) {
		out = append(out, real)
	}
	return out
}

// realPath is path with every symbolic link resolved, or path itself if
// that cannot be done (it is missing).
func realPath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}

// fingerprint is what a comparison knows of a file: the hash of its
// content, or why it could not be read.
type fingerprint struct {
	hash [sha256.Size]byte
	err  string
}

func sum(path string) fingerprint {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fingerprint{err: "missing"}
		}
		return fingerprint{err: err.Error()}
	}
	return fingerprint{hash: Hash(data)}
}
