package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"text/tabwriter"
)

// Summary describes c in a few lines for `sightline validate`: the counts
// first, then one line per listener and one per cluster. Hosts are the
// configured endpoints; a strict_dns endpoint may resolve to more.
func (c *Config) Summary() string {
	var routes, hosts int
	for _, l := range c.Listeners {
		for _, vh := range l.VirtualHosts {
			routes += len(vh.Routes)
		}
	}
	for _, cl := range c.Clusters {
		hosts += len(cl.Endpoints)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "listeners: %d, routes: %d, clusters: %d, hosts: %d\n", len(c.Listeners), routes, len(c.Clusters), hosts)
	if d := c.Dynamic; d != nil {
		// What the file holds is only part of it.
		fmt.Fprintf(&b, "dynamic: %s from the control plane at %s (ADS)\n", strings.Join(d.Resources, " and "), d.ADS.Address)
	}
	// Writes to a strings.Builder cannot fail, so neither can the
	// tabwriter's flushes.
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, l := range c.Listeners {
		n := 0
		for _, vh := range l.VirtualHosts {
			n += len(vh.Routes)
		}
		fmt.Fprintf(tw, "listener\t%s\t%s\t%s\t%s / %s\n", l.Name, l.Address, strings.Join(l.Protocols, ","),
			count(len(l.VirtualHosts), "virtual host"), count(n, "route"))
	}
	_ = tw.Flush()
	for _, cl := range c.Clusters {
		fmt.Fprintf(tw, "cluster\t%s\t%s\t%s\t%s\t%s\n", cl.Name, cl.Type, cl.LBPolicy, cl.Protocol,
			count(len(cl.Endpoints), "endpoint"))
	}
	_ = tw.Flush()
	return b.String()
}

// count formats n things, in the plural unless n is 1.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// JSON is c as indented JSON for the admin /config_dump endpoint, with
// secrets redacted (see redact). Durations read as Go durations ("1.5s").
func (c *Config) JSON() ([]byte, error) {
	// A JSON round trip is the deep copy: redact must not touch the
	// running config, which other goroutines read.
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	var cp Config
	if err := json.Unmarshal(raw, &cp); err != nil {
		return nil, fmt.Errorf("copying config: %w", err)
	}
	redact(reflect.ValueOf(&cp).Elem())
	out, err := json.MarshalIndent(&cp, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return out, nil
}

// redactedValue replaces a secret in /config_dump.
const redactedValue = "[redacted]"

// redact blanks, in place, every non-empty string field of v tagged
// `redact:"true"`, and every value of such a map of strings, at any depth
// (TLS key_file is a path, not a key, and is worth seeing; an OTLP access
// log's headers may hold an API key).
func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			redact(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			redact(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f, fv := v.Type().Field(i), v.Field(i)
			switch {
			case !f.IsExported():
			case f.Tag.Get("redact") == "true" && fv.Kind() == reflect.String:
				if fv.String() != "" {
					fv.SetString(redactedValue)
				}
			case f.Tag.Get("redact") == "true" && fv.Kind() == reflect.Map && fv.Type().Elem().Kind() == reflect.String:
				// Header values (an OTLP collector's API key): the names
				// stay, to show what is sent.
				for _, k := range fv.MapKeys() {
					fv.SetMapIndex(k, reflect.ValueOf(redactedValue))
				}
			default:
				redact(fv)
			}
		}
	}
}
