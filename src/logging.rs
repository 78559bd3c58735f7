//! Logging through env_logger (`RUST_LOG`, default `info`), with one change: actix-http logs every malformed
//! request it refuses at ERROR, so any client could fill the log at that level. Those lines become WARN, at most
//! one a second, saying how many were left out.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use log::{Level, Log, Metadata, Record};

/// Where actix-http logs a request it could not parse, and how that line begins.
const PARSE_ERROR: (&str, &str) = ("actix_http::h1::dispatcher", "stream error: request parse error");

pub fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = inner.filter();
    let logger = Logger { inner, malformed: Mutex::new(Window { started: None, left_out: 0 }) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

struct Logger {
    inner: env_logger::Logger,
    malformed: Mutex<Window>,
}

/// The current second of malformed-request lines.
struct Window {
    started: Option<Instant>,
    left_out: u64,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        let text = record.args().to_string();
        if record.target() != PARSE_ERROR.0 || !text.starts_with(PARSE_ERROR.1) {
            return self.inner.log(record);
        }
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
        self.inner.log(
            &Record::builder()
                .level(Level::Warn)
                .target("ferry::connections")
                .args(format_args!("refused a malformed request: {detail}{more}"))
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush()
    }
}
