package main

import (
	"github.com/sightline-proxy/sightline/proxy/envoyconf"
	"github.com/sightline-proxy/sightline/proxy/xds"
	"github.com/sightline-proxy/sightline/proxy/xds/apply"
)

// translate renders a control plane's resources as a config document,
// with envoyconf's translation: a field it refuses NACKs the resources.
var translate apply.Translator = func(s *xds.Snapshot) ([]byte, []apply.Skipped, error) {
	doc, skipped, err := envoyconf.Translate(&envoyconf.Resources{
		Listeners: s.Listeners,
		Routes:    s.Routes,
		Clusters:  s.Clusters,
		Endpoints: s.Endpoints,
		Secrets:   s.Secrets,
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]apply.Skipped, len(skipped))
	for i, sk := range skipped {
		out[i] = apply.Skipped{Path: sk.Path, Why: sk.Why}
	}
	return doc, out, nil
}
