package stats

// The control plane's stats: the stream's state and, for each kind of
// resource, Envoy's xDS subscription statistics. Clusters (CDS) and
// listeners (LDS) are named as Envoy names them; route configurations,
// endpoints and secrets are counted per kind (control_plane.rds.*,
// .eds.*, .sds.*), where Envoy counts each route configuration, cluster
// and secret on its own: one state-of-the-world response carries them
// all, and is accepted or refused as a whole.
var (
	controlPlaneConnected = define(Def{flat: "control_plane.connected_state", kind: KindGauge,
		help: "1 while the stream to the control plane is up, 0 while the proxy is reconnecting (it serves the last accepted config meanwhile)."})

	cdsStats = defineSubscription("cluster_manager.cds", "clusters (CDS)")
	ldsStats = defineSubscription("listener_manager.lds", "listeners (LDS)")
	rdsStats = defineSubscription("control_plane.rds", "route configurations (RDS)")
	edsStats = defineSubscription("control_plane.eds", "endpoints (EDS)")
	sdsStats = defineSubscription("control_plane.sds", "secrets (SDS)")
)

// subscriptionDefs are the catalog entries of one subscription.
type subscriptionDefs struct {
	attempt, success, failure, rejected, initFetchTimeout, configReload, updateTime, version *Def
}

// defineSubscription declares Envoy's subscription stats under prefix;
// what names the resources in the help.
func defineSubscription(prefix, what string) subscriptionDefs {
	counter := func(stat, help string) *Def {
		return define(Def{flat: prefix + "." + stat, kind: KindCounter, help: help})
	}
	return subscriptionDefs{
		attempt:  counter("update_attempt", "Responses from the control plane with "+what+", and times the stream ended before one came."),
		success:  counter("update_success", "Responses with "+what+" accepted (ACKed)."),
		failure:  counter("update_failure", "Times the stream carrying "+what+" failed (a network or gRPC error)."),
		rejected: counter("update_rejected", "Responses with "+what+" refused (NACKed): invalid, or not something the proxy can serve; the last accepted ones keep serving."),
		initFetchTimeout: counter("init_fetch_timeout",
			"Times initial_fetch_timeout passed before the first "+what+" came."),
		configReload: counter("config_reload", "Accepted responses with "+what+" that changed the running config."),
		updateTime: define(Def{flat: prefix + ".update_time", kind: KindGauge,
			help: "When " + what + " were last accepted, in milliseconds since the Unix epoch."}),
		version: define(Def{flat: prefix + ".version", kind: KindGauge,
			help: "A hash of the version_info of the " + what + " last accepted (/config_dump shows the text)."}),
	}
}

// Subscription is one kind of resource's xDS subscription stats (Envoy's
// update_attempt, update_success, update_failure, update_rejected,
// init_fetch_timeout, config_reload, update_time, version).
type Subscription struct {
	UpdateAttempt    *Counter
	UpdateSuccess    *Counter
	UpdateFailure    *Counter
	UpdateRejected   *Counter
	InitFetchTimeout *Counter
	ConfigReload     *Counter
	UpdateTime       *Gauge
	Version          *Gauge
}

// XDS is the control plane's stats (proxy/xds).
type XDS struct {
	ConnectedState          *Gauge
	CDS, LDS, RDS, EDS, SDS *Subscription
}

// XDS makes the control plane's stats. Call it once per process, when the
// proxy starts with a dynamic section: each call registers them anew, and
// a later reload that adds one keeps them. A nil Store's count nothing.
func (s *Store) XDS() *XDS {
	if s == nil {
		return &XDS{CDS: &Subscription{}, LDS: &Subscription{}, RDS: &Subscription{}, EDS: &Subscription{}, SDS: &Subscription{}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := scope{s: s, labels: &labels{}}
	sub := func(d subscriptionDefs) *Subscription {
		return &Subscription{
			UpdateAttempt:    sc.counter(d.attempt),
			UpdateSuccess:    sc.counter(d.success),
			UpdateFailure:    sc.counter(d.failure),
			UpdateRejected:   sc.counter(d.rejected),
			InitFetchTimeout: sc.counter(d.initFetchTimeout),
			ConfigReload:     sc.counter(d.configReload),
			UpdateTime:       sc.gauge(d.updateTime),
			Version:          sc.gauge(d.version),
		}
	}
	return &XDS{
		ConnectedState: sc.gauge(controlPlaneConnected),
		CDS:            sub(cdsStats),
		LDS:            sub(ldsStats),
		RDS:            sub(rdsStats),
		EDS:            sub(edsStats),
		SDS:            sub(sdsStats),
	}
}
