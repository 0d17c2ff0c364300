package config

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.yaml.in/yaml/v4"
)

// durationError is what Duration's decoders return. It keeps the message and
// the hint apart so that Load can put them in a Problem's fields; yaml v4
// wraps it in a *yaml.LoadError that carries the node's position.
type durationError struct {
	msg, hint string
}

func (e *durationError) Error() string {
	if e.hint == "" {
		return e.msg
	}
	return e.msg + " (" + e.hint + ")"
}

// durationHint is shown for anything that is not a Go duration at all.
const durationHint = "use a Go duration such as 500ms, 15s or 2m"

// parseDuration turns a Go duration string into a Duration. A bare zero
// ("0", "0.0") is accepted since it means the same in every unit; any other
// bare number is refused because "timeout: 15" could mean seconds or
// milliseconds, and guessing wrong is a silent outage.
func parseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		switch {
		case ferr != nil || math.IsNaN(f) || math.IsInf(f, 0):
			return 0, &durationError{msg: fmt.Sprintf("invalid duration %q", s), hint: durationHint}
		case f == 0:
			return 0, nil
		case f < 0:
			return 0, &durationError{msg: fmt.Sprintf("must not be negative, got %s", s)}
		}
		example := s + "s"
		if _, err := time.ParseDuration(example); err != nil {
			example = "15s"
		}
		return 0, &durationError{
			msg:  fmt.Sprintf("duration %s has no unit", s),
			hint: "durations need a unit, e.g. " + example,
		}
	}
	if d < 0 {
		return 0, &durationError{msg: fmt.Sprintf("must not be negative, got %s", s)}
	}
	return Duration(d), nil
}

// UnmarshalYAML reads a Go duration string ("500ms", "15s", "2m", "0").
// Bare non-zero numbers and negative durations are refused with a message
// and a hint; yaml v4 adds the node's line and column.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &durationError{msg: "must be a duration such as 15s, got " + describeNode(n)}
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a Go duration string, so that a dumped config
// reads as it was written.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes d as a Go duration string ("1.5s") rather than
// nanoseconds, so that /config_dump is readable.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads what MarshalJSON writes, so that a /config_dump can be
// decoded back into a Config. It accepts the same strings as UnmarshalYAML.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"15s\": %w", err)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// String formats d as time.Duration does ("1.5s", "0s").
func (d Duration) String() string { return time.Duration(d).String() }
