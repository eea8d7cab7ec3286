//! Prometheus metrics: the one registry, the instruments other modules feed, and the
//! text `GET /metrics` serves.
//!
//! Owns metric names, label sets and bucket boundaries. Modules never touch the registry:
//! they call the `Metrics` methods (`http_request`, `set_active_calls`, `call_finished`,
//! `set_outbox`, `observe_delivery_latency`). Label values are `&'static str` on purpose:
//! a label must come from a small fixed set (a route name, a status), never from a request
//! path, a phone number or anything else unbounded or secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::pbx::{LinkState, PbxStatus};

pub mod text;

/// The content type of [`Metrics::render`]'s output (OpenMetrics; see [`text`] for the
/// Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

const PBX_STATES: [LinkState; 6] = [
    LinkState::NotConfigured,
    LinkState::Down,
    LinkState::AuthFailed,
    LinkState::ChallengeRefused,
    LinkState::UnsupportedVersion,
    LinkState::Up,
];

/// Upper bounds (seconds) for the delivery latency histogram: from the PBX event to
/// Flowlu's 2xx, including retries (so up to half an hour).
const DELIVERY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// All instruments, registered once at start-up and shared (`Arc`) by whoever counts.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    pbx_state: Family<StateLabels, Gauge>,
    active_calls: Gauge,
    calls: Family<CallLabels, Counter>,
    backfilled: Counter,
    outbox_pending: Gauge,
    outbox_failed: Gauge,
    delivery_latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "appliance_http_requests",
            "HTTP requests served, by route name and status code",
            http_requests.clone(),
        );
        let pbx_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "appliance_pbx_connection_state",
            "1 for the current PBX connection state, 0 for the others",
            pbx_state.clone(),
        );
        let active_calls = Gauge::default();
        registry.register(
            "appliance_calls_active",
            "Calls in progress on the PBX that the appliance tracks",
            active_calls.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "appliance_calls",
            "Finished calls, by final status",
            calls.clone(),
        );
        let backfilled = Counter::default();
        registry.register(
            "appliance_calls_backfilled",
            "Calls reported from the PBX's own call records (back-fill, history import)",
            backfilled.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "appliance_outbox_pending",
            "Events waiting to be delivered to Flowlu",
            outbox_pending.clone(),
        );
        let outbox_failed = Gauge::default();
        registry.register(
            "appliance_outbox_failed",
            "Events whose delivery to Flowlu gave up and needs attention",
            outbox_failed.clone(),
        );
        let delivery_latency = Histogram::new(DELIVERY_BUCKETS);
        registry.register_with_unit(
            "appliance_outbox_delivery_latency",
            "Time from a PBX event to Flowlu's successful reply, retries included",
            Unit::Seconds,
            delivery_latency.clone(),
        );
        registry.register(
            "appliance_build",
            "The running appliance version",
            Info::new(BuildLabels {
                version: crate::VERSION,
            }),
        );
        registry.register_collector(Box::new(ProcessCollector {
            started: SystemTime::now(),
        }));
        let metrics = Metrics {
            registry,
            http_requests,
            pbx_state,
            active_calls,
            calls,
            backfilled,
            outbox_pending,
            outbox_failed,
            delivery_latency,
        };
        // Every series exists from the first scrape, so dashboards see zeros, not gaps.
        for state in PBX_STATES {
            let _ = metrics.pbx_state.get_or_create(&StateLabels {
                state: state.as_str(),
            });
        }
        metrics
    }

    /// Counts one served HTTP request. `route` is the router's name for it.
    pub fn http_request(&self, route: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels { route, status })
            .inc();
    }

    /// Sets the number of calls in progress.
    pub fn set_active_calls(&self, n: i64) {
        self.active_calls.set(n);
    }

    /// Counts a call reported from the PBX's call records (back-fill, history import).
    pub fn call_backfilled(&self) {
        self.backfilled.inc();
    }

    /// Counts a call that reached its final status (e.g. "answered", "missed", "busy").
    pub fn call_finished(&self, status: &'static str) {
        self.calls.get_or_create(&CallLabels { status }).inc();
    }

    /// Sets the outbox gauges: events waiting, and events given up on.
    pub fn set_outbox(&self, pending: i64, failed: i64) {
        self.outbox_pending.set(pending);
        self.outbox_failed.set(failed);
    }

    /// Records how long one event took from the PBX to Flowlu's 2xx.
    pub fn observe_delivery_latency(&self, latency: Duration) {
        self.delivery_latency.observe(latency.as_secs_f64());
    }

    /// A callback feeding the delivery latency histogram, for the outbox worker (which
    /// must not know about metrics).
    pub fn delivery_observer(&self) -> impl Fn(Duration) + Send + Sync + 'static {
        let histogram = self.delivery_latency.clone();
        move |latency| histogram.observe(latency.as_secs_f64())
    }

    /// The OpenMetrics text for a scrape, with the PBX state gauges taken from `pbx`.
    pub fn render(&self, pbx: &PbxStatus) -> String {
        for state in PBX_STATES {
            self.pbx_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::from(state == pbx.state));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// process_* metrics read from /proc at scrape time.
#[derive(Debug)]
struct ProcessCollector {
    started: SystemTime,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ticks = clock_ticks();
        if let Some((utime, stime)) = proc_cpu_ticks() {
            let cpu = ConstCounter::new((utime + stime) as f64 / ticks);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
        }
        if let Some(rss) = proc_rss_bytes() {
            let gauge = ConstGauge::<i64>::new(rss);
            gauge.encode(encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                gauge.metric_type(),
            )?)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let gauge = ConstGauge::<i64>::new(fds.count() as i64);
            gauge.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                gauge.metric_type(),
            )?)?;
        }
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let gauge = ConstGauge::<f64>::new(start);
        gauge.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            gauge.metric_type(),
        )?)?;
        Ok(())
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime and stime (fields 14 and 15 of /proc/self/stat), in clock ticks.
fn proc_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

fn proc_rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PbxConfig;
    use crate::pbx::StatusBoard;

    fn status(state: LinkState) -> PbxStatus {
        let board = StatusBoard::new(&PbxConfig {
            kind_name: "asterisk".into(),
            host: "127.0.0.1".into(),
            port: 0,
            user: String::new(),
            secret: Default::default(),
            ..crate::config::Config::defaults().pbx
        });
        board.set(state, None);
        board.get()
    }

    #[test]
    fn renders_every_instrument() {
        let m = Metrics::new();
        m.http_request("healthz", 200);
        m.http_request("healthz", 200);
        m.http_request("not_found", 404);
        m.set_active_calls(3);
        m.call_finished("answered");
        m.set_outbox(5, 1);
        m.observe_delivery_latency(Duration::from_millis(300));
        let text = m.render(&status(LinkState::Up));
        for line in [
            "appliance_http_requests_total{route=\"healthz\",status=\"200\"} 2",
            "appliance_http_requests_total{route=\"not_found\",status=\"404\"} 1",
            "appliance_pbx_connection_state{state=\"up\"} 1",
            "appliance_pbx_connection_state{state=\"down\"} 0",
            "appliance_calls_active 3",
            "appliance_calls_total{status=\"answered\"} 1",
            "appliance_outbox_pending 5",
            "appliance_outbox_failed 1",
            "appliance_outbox_delivery_latency_seconds_bucket{le=\"0.25\"} 0",
            "appliance_outbox_delivery_latency_seconds_bucket{le=\"0.5\"} 1",
            "appliance_outbox_delivery_latency_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains(&format!(
            "appliance_build_info{{version=\"{}\"}} 1",
            crate::VERSION
        )));
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let text = m.render(&status(LinkState::Down));
        assert!(text.contains("appliance_pbx_connection_state{state=\"up\"} 0"));
        assert!(text.contains("appliance_pbx_connection_state{state=\"down\"} 1"));
    }
}
