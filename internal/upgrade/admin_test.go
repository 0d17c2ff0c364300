package upgrade

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRequest drives POST /upgrade with the client `sightline upgrade`
// uses, the outcome given by a loop standing for the binary's.
func TestRequest(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		give    Outcome
		want    Result
		wantErr string
	}{
		{name: "upgraded", give: Outcome{Result: Result{OldPID: 10, NewPID: 11, Generation: 1}}, want: Result{OldPID: 10, NewPID: 11, Generation: 1}},
		{name: "with a timeout", timeout: 90 * time.Second, give: Outcome{Result: Result{OldPID: 10, NewPID: 12, Generation: 2}}, want: Result{OldPID: 10, NewPID: 12, Generation: 2}},
		{name: "the new process failed", give: Outcome{Err: errors.New("the new process (pid 11) failed: sightline.yaml:3:5: bad")}, wantErr: "upgrade failed (500 Internal Server Error): the new process (pid 11) failed: sightline.yaml:3:5: bad"},
		{name: "one at a time", give: Outcome{Err: ErrInProgress}, wantErr: "(409 Conflict): an upgrade is already in progress"},
		{name: "not ready", give: Outcome{Err: ErrNotReady}, wantErr: "(409 Conflict): this process is not ready yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			triggers := make(chan Trigger)
			srv := httptest.NewServer(Handler(triggers, make(chan struct{})))
			defer srv.Close()
			got := make(chan Trigger, 1)
			go func() {
				tr := <-triggers
				got <- tr
				tr.Reply <- tt.give
			}()
			res, err := Request(context.Background(), strings.TrimPrefix(srv.URL, "http://"), tt.timeout)
			tr := <-got
			if tr.From != "POST /upgrade" || tr.Timeout != tt.timeout {
				t.Errorf("trigger from %q with timeout %v, want POST /upgrade, %v", tr.From, tr.Timeout, tt.timeout)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res != tt.want {
				t.Errorf("result %+v, want %+v", res, tt.want)
			}
		})
	}
}

func TestHandlerRefuses(t *testing.T) {
	stopped := make(chan struct{})
	close(stopped)
	srv := httptest.NewServer(Handler(make(chan Trigger), stopped))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if _, err := Request(context.Background(), addr, 0); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a stopping process: error %v, want a 503", err)
	}
	resp, err := srv.Client().Post(srv.URL+Path+"?timeout=soon", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("timeout=soon: status %d, want 400", resp.StatusCode)
	}
}
