//! Command line and environment configuration: every flag can also be set as `FERRY_<FLAG>`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser, Subcommand};

/// ferry: upload and download files over HTTP, every strategy of the FastAPI benchmark as a safe endpoint.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no command is given).
    Serve,
    /// Print the OpenAPI document as JSON and exit.
    Openapi,
    /// Ask the server at `--addr` for `/health`; exit 0 when it is healthy (for container health checks).
    Healthcheck,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "FERRY_ADDR", default_value = "127.0.0.1:8000", global = true)]
    pub addr: SocketAddr,

    /// Worker threads, each running its own event loop; 0 means one per core.
    #[arg(long, env = "FERRY_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Directory holding `files/` (published files and their metadata) and `tmp/` (uploads in progress).
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Largest file the streaming strategies accept, e.g. `1073741824`, `64MiB`, `1GiB`.
    #[arg(long, env = "FERRY_MAX_UPLOAD_BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub max_upload_bytes: u64,

    /// Largest file the strategies that hold a whole file in memory accept (`single`, `single/sync`, base64).
    #[arg(long, env = "FERRY_MAX_BUFFERED_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub max_buffered_bytes: u64,

    /// fsync each file and its directory before answering 201 (`--fsync false` trades durability for speed).
    #[arg(long, env = "FERRY_FSYNC", default_value_t = true, action = ArgAction::Set)]
    pub fsync: bool,

    /// An upload whose body sends no byte for this long gets 408 and is discarded, e.g. `30s`, `500ms`.
    #[arg(long, env = "FERRY_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_idle_timeout: Duration,

    /// Memory budget of the `download/cached` strategy's LRU of whole files.
    #[arg(long, env = "FERRY_CACHE_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub cache_bytes: u64,

    /// Files larger than this are streamed by `download/cached` instead of being cached.
    #[arg(long, env = "FERRY_CACHE_MAX_FILE_BYTES", default_value = "8MiB", value_parser = parse_size)]
    pub cache_max_file_bytes: u64,
}

impl Config {
    /// `--workers`, with 0 resolved to the number of cores.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// A configuration for `data_dir` with every other value at its default.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Cli::parse_from(["ferry"]).config;
        config.data_dir = data_dir.into();
        config
    }
}

/// Accepts plain byte counts and sizes such as `64MiB` or `1GiB`.
fn parse_size(value: &str) -> Result<u64, String> {
    value.parse::<bytesize::ByteSize>().map(|size| size.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_integers_and_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn fsync_takes_an_explicit_value() {
        let cli = Cli::parse_from(["ferry", "--fsync", "false", "--body-idle-timeout", "2s"]);
        assert!(!cli.config.fsync);
        assert_eq!(cli.config.body_idle_timeout, Duration::from_secs(2));
    }
}
