//! Prometheus metrics, with `prometheus-client`: the official Rust client, an explicit registry (no global
//! recorder, so every in-process test server has its own), typed label sets, and counters that are one atomic
//! add on the request path. Served in the text format at `/metrics` on `--metrics-addr`.
//!
//! On the request path every label is a `&'static str` or a number, so recording allocates nothing; without
//! `--metrics-addr` nothing reads the metrics, and [`Metrics::off`] records nothing at all.
//!
//! Values that are state rather than events (files and bytes stored, cache bytes, free bytes) are read when
//! Prometheus scrapes, through [`Metrics::encode`]'s `now` argument.

use std::sync::atomic::AtomicI64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/files/download/cached/{id}`), never the path with an id.
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabels {
    strategy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

pub struct Metrics {
    /// Whether anything is recorded.
    on: bool,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    received: Family<StrategyLabels, Counter>,
    sent: Family<StrategyLabels, Counter>,
    uploads_in_flight: Gauge,
    uploads_failed: Family<CodeLabels, Counter>,
    connections: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_bytes: Gauge,
    files: Gauge,
    stored_bytes: Gauge,
    free_bytes: Gauge,
}

/// What is read at scrape time.
pub struct Now {
    pub files: u64,
    pub stored_bytes: u64,
    pub cache_bytes: u64,
    pub free_bytes: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

impl Metrics {
    /// Metrics that record nothing: what a server without `--metrics-addr` uses.
    pub fn off() -> Self {
        Metrics::new(false)
    }

    fn new(on: bool) -> Self {
        let mut registry = Registry::with_prefix("ferry");
        // from 1 ms to about 20 minutes: a 4 KiB download and a 1 GiB upload over a slow link both land in a
        // bucket of their own
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.5, 16))
        });
        let metrics = Metrics {
            on,
            requests: Family::default(),
            durations,
            received: Family::default(),
            sent: Family::default(),
            uploads_in_flight: Gauge::default(),
            uploads_failed: Family::default(),
            connections: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_bytes: Gauge::default(),
            files: Gauge::default(),
            stored_bytes: Gauge::default(),
            free_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "Requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from request head to response, by route template",
            Unit::Seconds,
            metrics.durations.clone(),
        );
        registry.register_with_unit(
            "received",
            "Upload body bytes received, by strategy",
            Unit::Bytes,
            metrics.received.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Download body bytes answered (Content-Length of 200 and 206), by strategy",
            Unit::Bytes,
            metrics.sent.clone(),
        );
        registry.register("uploads_in_flight", "Uploads being received now", metrics.uploads_in_flight.clone());
        registry.register(
            "uploads_failed",
            "Uploads refused or cut, by error code (incomplete_body: the client went away)",
            metrics.uploads_failed.clone(),
        );
        registry.register("open_connections", "Client connections open now", metrics.connections.clone());
        registry.register("cache_hits", "download/cached answers served from memory", metrics.cache_hits.clone());
        registry.register("cache_misses", "download/cached answers read from disk", metrics.cache_misses.clone());
        registry.register_with_unit(
            "cache_held",
            "Bytes held by download/cached, leased ones included",
            Unit::Bytes,
            metrics.cache_bytes.clone(),
        );
        registry.register("stored_files", "Files stored", metrics.files.clone());
        registry.register_with_unit("stored", "Bytes of the files stored", Unit::Bytes, metrics.stored_bytes.clone());
        registry.register_with_unit(
            "volume_free",
            "Free bytes on the data volume",
            Unit::Bytes,
            metrics.free_bytes.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// Whether this records anything (the request path skips the route lookup when not).
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// One answered request; `method` is one of [`method_label`]'s.
    pub fn request(&self, route: &'static str, method: &'static str, status: u16, seconds: f64) {
        if !self.on {
            return;
        }
        self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
        self.durations.get_or_create(&RouteLabels { route }).observe(seconds);
    }

    pub fn received(&self, strategy: &'static str, bytes: u64) {
        if self.on {
            self.received.get_or_create(&StrategyLabels { strategy }).inc_by(bytes);
        }
    }

    pub fn sent(&self, strategy: &'static str, bytes: u64) {
        if self.on {
            self.sent.get_or_create(&StrategyLabels { strategy }).inc_by(bytes);
        }
    }

    /// Counts an upload in flight until the guard is dropped.
    pub fn upload_started(&self) -> GaugeGuard {
        self.gauge_up(&self.uploads_in_flight)
    }

    pub fn upload_failed(&self, code: &'static str) {
        if self.on {
            self.uploads_failed.get_or_create(&CodeLabels { code }).inc();
        }
    }

    /// Counts a connection until the guard is dropped.
    pub fn connection_opened(&self) -> GaugeGuard {
        self.gauge_up(&self.connections)
    }

    fn gauge_up(&self, gauge: &Gauge) -> GaugeGuard {
        if !self.on {
            return GaugeGuard(None);
        }
        gauge.inc();
        GaugeGuard(Some(gauge.clone()))
    }

    pub fn cache_lookup(&self, hit: bool) {
        if !self.on {
            return;
        }
        if hit {
            self.cache_hits.inc()
        } else {
            self.cache_misses.inc()
        };
    }

    /// The text exposition, with the state-like values as they are `now`.
    pub fn encode(&self, now: Now) -> String {
        let set = |gauge: &Gauge, value: u64| gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        set(&self.files, now.files);
        set(&self.stored_bytes, now.stored_bytes);
        set(&self.cache_bytes, now.cache_bytes);
        set(&self.free_bytes, now.free_bytes);
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The OpenMetrics exposition in Prometheus's classic text format (0.0.4), for scrapers that do not ask for
/// OpenMetrics (`curl`, `promtool check metrics`): a counter family is named with its `_total` there, and there
/// are no `# UNIT` or `# EOF` lines. The samples are the same.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        let comment = line.strip_prefix("# HELP ").map(|rest| ("HELP", rest));
        let comment = comment.or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("TYPE", rest)));
        match comment {
            _ if line.starts_with("# UNIT ") || line == "# EOF" => continue,
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(&name) { "_total" } else { "" };
                text.push_str(&format!("# {kind} {name}{total} {tail}"));
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// The method as a label: the ones HTTP defines, and `other` for the rest, so that no client can make a label
/// set of its own.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|known| *known == method.as_str()).unwrap_or("other")
}

/// Decrements its gauge when dropped.
pub struct GaugeGuard(Option<Gauge<i64, AtomicI64>>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}
