package main

import "github.com/sightline-proxy/sightline/proxy/xds/apply"

// translate renders a control plane's resources as a config document;
// nil until the Envoy translation is linked in.
var translate apply.Translator
