package envoyfmt

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TimePart is one piece of a %START_TIME(...)% layout: literal text, a Go
// time layout for one strftime specifier, the seconds since the epoch
// (%s), or Digits digits of the second's fraction (%f, %3f).
type TimePart struct {
	Text   string // literal, or the Go layout when Layout is set
	Layout bool
	Epoch  bool
	Digits int
}

// strftime maps the strftime specifiers Envoy's START_TIME takes (Envoy
// formats them with absl in UTC) to Go layouts.
var strftime = map[byte]string{
	'Y': "2006", 'y': "06", 'm': "01", 'd': "02", 'e': "_2", 'j': "002",
	'H': "15", 'I': "03", 'M': "04", 'S': "05", 'p': "PM",
	'b': "Jan", 'h': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday",
	'z': "-0700", 'Z': "MST",
	'T': "15:04:05", 'F': "2006-01-02", 'D': "01/02/06", 'R': "15:04",
}

// parseTime compiles a strftime layout: the specifiers in strftime, %s,
// %f and %1f..%9f (Envoy's fractions, 9 digits by default), %E1S..%E9S
// (seconds with that many fraction digits) and %%.
func parseTime(layout string) ([]TimePart, error) {
	var parts []TimePart
	var lit strings.Builder
	add := func(p TimePart) {
		if lit.Len() > 0 {
			parts = append(parts, TimePart{Text: lit.String()})
			lit.Reset()
		}
		parts = append(parts, p)
	}
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		if strings.HasPrefix(layout[i+1:], "%") {
			lit.WriteByte('%')
			i++
			continue
		}
		n, p, err := timeSpec(layout[i+1:])
		if err != nil {
			return nil, err
		}
		add(p)
		i += n
	}
	if lit.Len() > 0 {
		parts = append(parts, TimePart{Text: lit.String()})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("empty time layout (leave out the parentheses for Envoy's default)")
	}
	return parts, nil
}

// timeSpec parses the specifier after a %: how many bytes it takes, and
// its part.
func timeSpec(s string) (int, TimePart, error) {
	switch {
	case s == "":
		return 0, TimePart{}, fmt.Errorf("a %% at the end of the time layout (write %%%% for a literal %%)")
	case s[0] == 's':
		return 1, TimePart{Epoch: true}, nil
	case s[0] == 'f':
		return 1, TimePart{Digits: 9}, nil
	case len(s) >= 2 && s[0] >= '1' && s[0] <= '9' && s[1] == 'f':
		return 2, TimePart{Digits: int(s[0] - '0')}, nil
	case len(s) >= 3 && s[0] == 'E' && s[1] >= '1' && s[1] <= '9' && s[2] == 'S':
		return 3, TimePart{Text: "05." + strings.Repeat("0", int(s[1]-'0')), Layout: true}, nil
	}
	if l, ok := strftime[s[0]]; ok {
		return 1, TimePart{Text: l, Layout: true}, nil
	}
	return 0, TimePart{}, fmt.Errorf("unknown time specifier %%%c (known: %%Y %%m %%d %%H %%M %%S %%z %%s %%f %%3f %%E3S and strftime's others)", s[0])
}

// AppendTime appends t, in UTC, laid out by parts.
func AppendTime(b []byte, t time.Time, parts []TimePart) []byte {
	t = t.UTC()
	for _, p := range parts {
		switch {
		case p.Layout:
			b = t.AppendFormat(b, p.Text)
		case p.Epoch:
			b = strconv.AppendInt(b, t.Unix(), 10)
		case p.Digits > 0:
			b = appendFraction(b, t.Nanosecond(), p.Digits)
		default:
			b = append(b, p.Text...)
		}
	}
	return b
}

// appendFraction appends the first digits digits of ns, a nanosecond
// count below one second, zero-padded.
func appendFraction(b []byte, ns, digits int) []byte {
	for range 9 - digits {
		ns /= 10
	}
	var buf [9]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + ns%10)
		ns /= 10
	}
	return append(b, buf[:digits]...)
}
