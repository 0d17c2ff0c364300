package otlp

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestDeltasKeepFailedChanges: an export the collector did not take (no
// commit) leaves the baseline where it was, so the next export carries its
// changes too; nothing is lost to a collector outage.
func TestDeltasKeepFailedChanges(t *testing.T) {
	start := time.Unix(100, 0)
	d := newDeltas(start)
	attrs := attribute.NewSet(attribute.String("cluster_name", "c"))
	export := func(total int64, at time.Time) *metricdata.ResourceMetrics {
		return &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{{
			Name: "cluster.upstream_rq_total",
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
				DataPoints: []metricdata.DataPoint[int64]{{Attributes: attrs, StartTime: start, Time: at, Value: total}}},
		}}}}}
	}
	point := func(rm *metricdata.ResourceMetrics) metricdata.DataPoint[int64] {
		return rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints[0]
	}
	tests := []struct {
		total     int64
		taken     bool // the collector took it
		want      int64
		wantStart time.Time
	}{
		{10, true, 10, start},
		{15, false, 5, time.Unix(101, 0)},
		{22, true, 12, time.Unix(101, 0)}, // the failed export's 5 with these 7
		{30, true, 8, time.Unix(103, 0)},
	}
	for i, tt := range tests {
		rm := export(tt.total, time.Unix(101+int64(i), 0))
		d.convert(rm)
		if p := point(rm); p.Value != tt.want || !p.StartTime.Equal(tt.wantStart) {
			t.Errorf("export %d: %d from %v, want %d from %v", i+1, p.Value, p.StartTime, tt.want, tt.wantStart)
		}
		if rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).Temporality != metricdata.DeltaTemporality {
			t.Errorf("export %d is not delta", i+1)
		}
		if tt.taken {
			d.commit()
		}
	}
}
