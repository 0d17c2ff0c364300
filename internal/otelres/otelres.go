// Package otelres builds the OpenTelemetry resource that names this proxy
// on everything it exports: spans and OTLP metrics carry the same one, so a
// backend joins them by their attributes.
package otelres

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// DefaultServiceName is service.name when the config gives none.
const DefaultServiceName = "sightline"

// New returns the resource: the SDK's defaults (telemetry.sdk.*), with
// service.name, service.version (the binary's, as `sightline version`
// prints it), the node id as service.instance.id and its zone as
// cloud.availability_zone.
func New(service string, node config.Node) (*resource.Resource, error) {
	if service == "" {
		service = DefaultServiceName
	}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", service),
		attribute.String("service.version", version.Get().Version),
	}
	if node.ID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", node.ID))
	}
	if node.Zone != "" {
		attrs = append(attrs, attribute.String("cloud.availability_zone", node.Zone))
	}
	return resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
}
