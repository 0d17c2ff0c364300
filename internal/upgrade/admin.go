package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Path is the admin endpoint that upgrades: POST, with an optional
// ?timeout= (a Go duration) for the new process to be ready.
const Path = "/upgrade"

// Errors an upgrade is refused with before anything is started.
var (
	ErrInProgress = errors.New("an upgrade is already in progress")
	ErrNotReady   = errors.New("this process is not ready yet: it upgrades once it serves")
	ErrStopping   = errors.New("this process is draining or handed over: it takes no upgrade")
)

// Trigger asks the process to upgrade: from POST /upgrade or a signal.
type Trigger struct {
	// From names the asker in the log: "SIGUSR2", "POST /upgrade".
	From string
	// Timeout is how long the new process has to be ready; 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// Reply, when not nil, gets the outcome; it must have room for it.
	Reply chan<- Outcome
}

// Outcome is how an upgrade ended.
type Outcome struct {
	Result
	Err error
}

// Result is the body of a successful POST /upgrade: the new process
// serves, and the old one drains and exits.
type Result struct {
	OldPID     int `json:"old_pid"`
	NewPID     int `json:"new_pid"`
	Generation int `json:"generation"`
}

// Handler serves POST /upgrade: it sends a Trigger on triggers and
// answers with the outcome, 200 and a Result once the new process is
// ready, 409 while an upgrade runs or before the process is ready, 503
// once it drains, 500 with the new process's reason when it failed.
// stopped is closed when the process takes no more triggers.
func Handler(triggers chan<- Trigger, stopped <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var timeout time.Duration
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				http.Error(w, fmt.Sprintf("timeout: want a positive duration such as 90s, got %q", v), http.StatusBadRequest)
				return
			}
			timeout = d
		}
		reply := make(chan Outcome, 1)
		select {
		case triggers <- Trigger{From: "POST " + Path, Timeout: timeout, Reply: reply}:
		case <-stopped:
			http.Error(w, ErrStopping.Error(), http.StatusServiceUnavailable)
			return
		case <-r.Context().Done():
			return
		}
		// Once sent, the trigger is answered: the new process is started
		// and waited for whether or not the caller is still there.
		o := <-reply
		switch {
		case o.Err == nil:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(o.Result)
		case errors.Is(o.Err, ErrInProgress), errors.Is(o.Err, ErrNotReady):
			http.Error(w, o.Err.Error(), http.StatusConflict)
		case errors.Is(o.Err, ErrStopping):
			http.Error(w, o.Err.Error(), http.StatusServiceUnavailable)
		default:
			http.Error(w, o.Err.Error(), http.StatusInternalServerError)
		}
	})
}

// Request asks the process whose admin server is at addr to upgrade and
// waits for the outcome: `sightline upgrade`. timeout is the new
// process's (0: the server's default); the wait allows it and a minute
// more.
func Request(ctx context.Context, addr string, timeout time.Duration) (Result, error) {
	u := "http://" + addr + Path
	if timeout > 0 {
		u += "?timeout=" + timeout.String()
	}
	wait := timeout
	if wait <= 0 {
		wait = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, wait+time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return Result{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("asking %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatus))
	if err != nil {
		return Result{}, fmt.Errorf("reading the answer of %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("upgrade failed (%s): %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var res Result
	if err := json.Unmarshal(body, &res); err != nil {
		return Result{}, fmt.Errorf("reading the answer of %s: %w", addr, err)
	}
	return res, nil
}
