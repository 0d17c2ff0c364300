package health

import (
	"strings"
	"testing"

	"github.com/sightline-proxy/sightline/accesslog"
)

// render writes one transition as a short token:
//
//	add!          add_healthy_event, first_check true (host now healthy)
//	add           add_healthy_event, first_check false
//	eject:TYPE    eject_unhealthy_event with failure_type TYPE, after
//	              unhealthy_threshold failures
//	eject-now:TYPE  the same, at once: the host answered that it is down
//	fail!:TYPE    health_check_failure_event, first_check true
//	H / U         no event; the host is healthy / unhealthy
//
// Anything inconsistent (a change without its event, an event with the
// wrong health) renders as itself so that the table shows it.
func render(tr transition) string {
	switch tr.event {
	case accesslog.AddHealthy:
		if !tr.changed || !tr.healthy || tr.failureType != "" {
			return "bad-add"
		}
		if tr.firstCheck {
			return "add!"
		}
		return "add"
	case accesslog.EjectUnhealthy:
		if !tr.changed || tr.healthy || tr.firstCheck {
			return "bad-eject"
		}
		if tr.immediate {
			return "eject-now:" + tr.failureType
		}
		return "eject:" + tr.failureType
	case accesslog.HealthCheckFailure:
		if tr.changed || tr.healthy || !tr.firstCheck {
			return "bad-fail"
		}
		return "fail!:" + tr.failureType
	case 0:
		switch {
		case tr.changed:
			return "bad-silent-change"
		case tr.healthy:
			return "H"
		}
		return "U"
	}
	return "bad-event"
}

// step turns a letter of the table into a result: P pass, A answered
// unhealthy, R answered a retriable status, N connection failed, T timed
// out.
func step(t *testing.T, c byte) result {
	switch c {
	case 'P':
		return result{pass: true}
	case 'A':
		return result{failure: accesslog.FailureActive}
	case 'R':
		return result{failure: accesslog.FailureActive, retriable: true}
	case 'N':
		return result{failure: accesslog.FailureNetwork}
	case 'T':
		return result{failure: accesslog.FailureNetworkTimeout}
	}
	t.Fatalf("unknown step %q", c)
	return result{}
}

func TestStateMachine(t *testing.T) {
	tests := []struct {
		name               string
		healthy, unhealthy int
		give               string // one letter per check: P, A, R, N, T
		want               string // one token per check, see render
	}{
		{"first pass makes healthy", 2, 3, "P", "add!"},
		{"first pass ignores healthy_threshold", 5, 3, "P P", "add! H"},
		{"first check answered unhealthy", 2, 3, "A", "fail!:ACTIVE"},
		{"first check connection failed", 2, 3, "N", "fail!:NETWORK"},
		{"first check timed out", 2, 3, "T", "fail!:NETWORK_TIMEOUT"},
		{"after failed first check healthy_threshold passes", 2, 3, "N P P", "fail!:NETWORK U add"},
		{"eject after unhealthy_threshold failures", 2, 3, "P N N N", "add! H H eject:NETWORK"},
		{"timeouts count toward the threshold", 2, 3, "P T T T", "add! H H eject:NETWORK_TIMEOUT"},
		{"retriable answers count toward the threshold", 2, 3, "P R R R", "add! H H eject:ACTIVE"},
		{"eject names the last failure", 2, 3, "P N R T", "add! H H eject:NETWORK_TIMEOUT"},
		{"an unhealthy answer ejects at once", 2, 3, "P A", "add! eject-now:ACTIVE"},
		{"an unhealthy answer ejects at once with a high threshold", 2, 100, "P P A", "add! H eject-now:ACTIVE"},
		{"an unhealthy answer cuts a count short", 2, 3, "P N A", "add! H eject-now:ACTIVE"},
		{"an unhealthy answer on the threshold is an ordinary eject", 2, 3, "P N N A", "add! H H eject:ACTIVE"},
		{"pass resets the failure count", 2, 3, "P N N P N N N", "add! H H H H H eject:NETWORK"},
		{"failure resets the pass count", 2, 3, "A P A P P", "fail!:ACTIVE U U U add"},
		{"down host logs once", 2, 3, "N N T A N", "fail!:NETWORK U U U U"},
		{"up host logs once", 2, 3, "P P P P", "add! H H H"},
		{"thresholds of one flip every time", 1, 1, "P A P N", "add! eject:ACTIVE add eject:NETWORK"},
		{"thresholds below one are one", 0, -1, "P N P", "add! eject:NETWORK add"},
		{"full cycle", 2, 2, "P N N N P P T T", "add! H eject:NETWORK U U add H eject:NETWORK_TIMEOUT"},
		{"full cycle with answers", 2, 2, "P A A R P P R A", "add! eject-now:ACTIVE U U U add H eject:ACTIVE"},
		{"second failed check is not a first check", 2, 3, "A A P P", "fail!:ACTIVE U U add"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newState(tt.healthy, tt.unhealthy)
			if s.healthy {
				t.Fatal("a new host must start unhealthy")
			}
			var got []string
			for _, c := range []byte(strings.ReplaceAll(tt.give, " ", "")) {
				tr := s.observe(step(t, c))
				got = append(got, render(tr))
				if tr.healthy != s.healthy {
					t.Fatalf("after %q: transition says healthy=%v, state says %v", c, tr.healthy, s.healthy)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("give %q\ngot  %q\nwant %q", tt.give, g, tt.want)
			}
		})
	}
}
