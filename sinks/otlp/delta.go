package otlp

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// deltas turns the sink's cumulative exports into delta ones (temporality:
// delta). It belongs to the sender. A baseline is what the collector last
// took of a series, so an export that fails, or is replaced by a newer one
// before it is sent, loses nothing: its changes go out with the next.
type deltas struct {
	start time.Time // the sink's start: the first baseline's time
	sums  map[seriesKey]sumBase
	hists map[seriesKey]histBase
	// The baselines of the export in flight, committed once it is taken.
	nextSums  map[seriesKey]sumBase
	nextHists map[seriesKey]histBase
}

type seriesKey struct {
	name  string
	attrs attribute.Distinct
}

type sumBase struct {
	v int64
	t time.Time
}

type histBase struct {
	counts []uint64
	count  uint64
	sum    float64
	t      time.Time
}

func newDeltas(start time.Time) *deltas {
	return &deltas{start: start, sums: map[seriesKey]sumBase{}, hists: map[seriesKey]histBase{},
		nextSums: map[seriesKey]sumBase{}, nextHists: map[seriesKey]histBase{}}
}

// convert rewrites rm's sums and histograms, in place, as changes since
// their baselines, and stages the new baselines for commit.
func (d *deltas) convert(rm *metricdata.ResourceMetrics) {
	clear(d.nextSums)
	clear(d.nextHists)
	for i := range rm.ScopeMetrics {
		ms := rm.ScopeMetrics[i].Metrics
		for j := range ms {
			switch data := ms[j].Data.(type) {
			case metricdata.Sum[int64]:
				for k := range data.DataPoints {
					dp := &data.DataPoints[k]
					key := seriesKey{ms[j].Name, dp.Attributes.Equivalent()}
					base, ok := d.sums[key]
					if !ok {
						base.t = d.start
					}
					d.nextSums[key] = sumBase{v: dp.Value, t: dp.Time}
					dp.Value -= base.v
					dp.StartTime = base.t
				}
				data.Temporality = metricdata.DeltaTemporality
				ms[j].Data = data
			case metricdata.Histogram[float64]:
				for k := range data.DataPoints {
					dp := &data.DataPoints[k]
					key := seriesKey{ms[j].Name, dp.Attributes.Equivalent()}
					base, ok := d.hists[key]
					if !ok {
						base.t = d.start
					}
					d.nextHists[key] = histBase{counts: dp.BucketCounts, count: dp.Count, sum: dp.Sum, t: dp.Time}
					counts := make([]uint64, len(dp.BucketCounts))
					for b := range counts {
						counts[b] = dp.BucketCounts[b]
						if b < len(base.counts) {
							counts[b] -= base.counts[b]
						}
					}
					dp.BucketCounts = counts
					dp.Count -= base.count
					dp.Sum -= base.sum
					dp.StartTime = base.t
				}
				data.Temporality = metricdata.DeltaTemporality
				ms[j].Data = data
			}
		}
	}
}

// commit makes the staged baselines current: the collector took the
// export.
func (d *deltas) commit() {
	for k, v := range d.nextSums {
		d.sums[k] = v
	}
	for k, v := range d.nextHists {
		d.hists[k] = v
	}
}
