//! Logging: one line per event, as text (the default, env_logger's look) or JSON lines (`--log-format json`),
//! filtered by `RUST_LOG` (default `info`).
//!
//! Every line a request causes carries its id ([`RequestId`]): the id is the thread's current one while the
//! request's handler or its response body is polled ([`RequestId::enter`], around every poll), and
//! [`crate::request_id::carry`] takes it into closures run on the blocking pool. This stays on the `log` facade rather than `tracing`: a
//! thread-local swap per poll costs a few nanoseconds where a span per request costs an allocation and a
//! subscriber lookup, `tracing` too needs every `spawn_blocking` closure to be handed the span by hand, and it
//! would add tracing, tracing-subscriber and tracing-actix-web to the build.
//!
//! actix-http logs every malformed request it refuses at ERROR, so any client could fill the log at that level.
//! Those lines become WARN, at most one a second, saying how many were left out.

use std::{
    borrow::Cow,
    cell::RefCell,
    io::Write,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use log::{Level, Log, Metadata, Record};
use serde::Serialize;

use crate::request_id::{RequestId, current};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[2026-11-28T02:00:00.123Z INFO  ferry::upload <request id>] stored …`
    #[default]
    Text,
    /// One JSON object a line: `ts`, `level`, `target`, `msg`, `request_id` (null outside requests), and the
    /// access line's fields as keys of their own.
    Json,
}

/// The target of the access lines (`RUST_LOG=info,ferry::access=off` turns them off).
pub const ACCESS_TARGET: &str = "ferry::access";

/// Where actix-http logs a request it could not parse, and how that line begins.
const PARSE_ERROR: (&str, &str) = ("actix_http::h1::dispatcher", "stream error: request parse error");

/// One access line's fields, beside the request id. Serialised as keys of the JSON line.
#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    /// The client: the peer, or what a trusted proxy said it forwarded for.
    pub client: &'a str,
    pub method: &'a str,
    /// The route template (`/files/download/cached/{id}`), `unmatched` when no route took the request.
    pub route: &'a str,
    pub path: &'a str,
    /// With signed links' signatures hidden.
    pub query: &'a str,
    pub status: u16,
    /// The `error` code ferry answered with, for 4xx and 5xx.
    pub error: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub user_agent: Option<&'a str>,
    /// The name of the token that access control admitted (never the token).
    pub token: Option<&'a str>,
}

/// The logger, once [`init`] has run (in-process test servers run without one).
static LOGGER: OnceLock<&'static Logger> = OnceLock::new();

pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = env_filter::Builder::new().parse(&spec).build();
    let max = filter.filter();
    let enabled = |level| filter.enabled(&Metadata::builder().level(level).target(ACCESS_TARGET).build());
    let access = (enabled(Level::Info), enabled(Level::Debug));
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        filter,
        format,
        access,
        malformed: Mutex::new(Window { started: None, left_out: 0 }),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
        let _ = LOGGER.set(logger);
    }
}

/// Whether an access line at `level` would be written (when not, the request path skips gathering it).
pub fn access_enabled(level: Level) -> bool {
    LOGGER.get().is_some_and(|logger| match level {
        Level::Error | Level::Warn | Level::Info => logger.access.0,
        Level::Debug | Level::Trace => logger.access.1,
    })
}

/// Writes the access line of request `id`.
pub fn access(level: Level, id: &RequestId, line: &AccessLine) {
    let Some(logger) = LOGGER.get() else { return };
    let text = match logger.format {
        LogFormat::Text => {
            let micros = (line.duration_ms * 1000.0) as u64;
            let query = if line.query.is_empty() { String::new() } else { format!("?{}", line.query) };
            format!(
                "{} \"{} {}{query}\" {} {} in={} out={} {}.{:03}ms route={} ua={:?} token={}",
                line.client,
                line.method,
                line.path,
                line.status,
                line.error.unwrap_or("-"),
                line.bytes_in,
                line.bytes_out,
                // whole microseconds: integer formatting costs a fraction of a float's on every request
                micros / 1000,
                micros % 1000,
                line.route,
                line.user_agent.unwrap_or("-"),
                line.token.unwrap_or("-"),
            )
        }
        LogFormat::Json => format!("{} {} {}", line.method, line.path, line.status),
    };
    logger.write(level, ACCESS_TARGET, &text, Some(id), Some(line));
}

struct Logger {
    filter: env_filter::Filter,
    format: LogFormat,
    /// Whether access lines are written at INFO and at DEBUG.
    access: (bool, bool),
    malformed: Mutex<Window>,
}

/// The current second of malformed-request lines.
struct Window {
    started: Option<Instant>,
    left_out: u64,
}

thread_local! {
    /// The current second as RFC 3339 without its `Z`, formatted once a second per thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Now, as RFC 3339 with milliseconds (`2026-11-28T03:10:00.123Z`).
fn timestamp() -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != now.as_secs() {
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            *second = (now.as_secs(), text.trim_end_matches('Z').to_owned());
        }
        format!("{}.{:03}Z", second.1, now.subsec_millis())
    })
}

/// A JSON line.
#[derive(Serialize)]
struct Line<'a> {
    ts: &'a str,
    level: &'a str,
    target: &'a str,
    msg: &'a str,
    request_id: Option<&'a str>,
    #[serde(flatten)]
    access: Option<&'a AccessLine<'a>>,
}

impl Logger {
    /// One line, in one `write` so that lines of concurrent requests never interleave.
    fn write(&self, level: Level, target: &str, msg: &str, id: Option<&RequestId>, access: Option<&AccessLine>) {
        let ts = timestamp();
        let id = id.map(RequestId::as_str);
        let mut out = Vec::with_capacity(128 + msg.len());
        match self.format {
            LogFormat::Text => {
                let _ = match id {
                    Some(id) => write!(out, "[{ts} {level:<5} {target} {id}] {msg}"),
                    None => write!(out, "[{ts} {level:<5} {target}] {msg}"),
                };
            }
            LogFormat::Json => {
                let line = Line { ts: &ts, level: level.as_str(), target, msg, request_id: id, access };
                let _ = serde_json::to_writer(&mut out, &line);
            }
        }
        out.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&out);
    }

    /// actix-http's malformed-request line, thinned to one WARN a second.
    fn malformed(&self, text: &str) {
        let mut window = self.malformed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if window.started.is_some_and(|started| now - started < Duration::from_secs(1)) {
            window.left_out += 1;
            return;
        }
        let left_out = std::mem::replace(&mut window.left_out, 0);
        window.started = Some(now);
        drop(window);
        let detail = text.trim_start_matches("stream error: ");
        let more = if left_out > 0 { format!(" ({left_out} more in the second before)") } else { String::new() };
        let line = format!("refused a malformed request: {detail}{more}");
        self.write(Level::Warn, "ferry::connections", &line, None, None);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.filter.matches(record) {
            return;
        }
        let text: Cow<str> = match record.args().as_str() {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(record.args().to_string()),
        };
        if record.target() == PARSE_ERROR.0 && text.starts_with(PARSE_ERROR.1) {
            return self.malformed(&text);
        }
        self.write(record.level(), record.target(), &text, current().as_ref(), None);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        let ts = timestamp();
        assert_eq!((ts.len(), &ts[10..11], &ts[19..20], &ts[23..]), (24, "T", ".", "Z"), "{ts}");
        let parsed = humantime::parse_rfc3339(&ts).unwrap();
        assert!(SystemTime::now().duration_since(parsed).unwrap() < Duration::from_secs(60));
    }
}
