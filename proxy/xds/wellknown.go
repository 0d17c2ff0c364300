package xds

// The extension types resources commonly carry in typed_config, linked
// in so that /config_dump can render them (a type the binary does not
// know is shown by its name and an error instead).
import (
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)
