//! Command line and environment configuration: every flag can also be set as `FERRY_<FLAG>`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser, Subcommand};

use crate::{auth::Scope, logging::LogFormat};

/// ferry: upload and download files over HTTP, every strategy of the FastAPI benchmark as a safe endpoint.
///
/// With no command, ferry serves: `ferry --data-dir X` is `ferry serve --data-dir X`.
#[derive(Debug, Clone, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no command is given).
    Serve(Box<Config>),
    /// Print the OpenAPI document, for the default limits, as JSON and exit.
    Openapi,
    /// Ask a running ferry whether it is healthy; exit 0 when it is (for container health checks).
    Healthcheck(Probe),
    /// Check every stored file (metadata, size, sha256) of a data directory no ferry is using; exit 0 when all are
    /// sound, 1 when some are damaged, 2 when the check cannot run.
    Fsck(Fsck),
    /// Create, list and revoke the access tokens in the tokens file.
    Token(TokenArgs),
}

impl Cli {
    /// The command to run; serving when none was named.
    pub fn command(self) -> Command {
        self.command.unwrap_or(Command::Serve(Box::new(self.serve)))
    }
}

/// `ferry healthcheck`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct Probe {
    /// Address of the ferry to ask; an unspecified address (`0.0.0.0:8000`) asks loopback on its port.
    #[arg(long, env = "FERRY_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// How long to wait for the answer, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `ferry fsck`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct Fsck {
    /// The data directory to check (the server's `--data-dir`).
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Move damaged files to `<data>/quarantine/` and remove leftovers of interrupted publishes, by the rules
    /// ferry applies at startup.
    #[arg(long)]
    pub repair: bool,

    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Where files live: the data directory (local disk, the default) or a bucket of an S3-compatible store, which
/// any number of ferry replicas can share.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// `local`: files and their index in the data directory. `s3`: files and their rows in `--s3-bucket`, so that
    /// several replicas serve the same files; the data directory then holds only uploads in progress. Credentials
    /// come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "FERRY_STORAGE", value_enum, default_value_t = StorageKind::Local)]
    pub storage: StorageKind,

    /// The S3 endpoint, `http(s)://host:port` (Garage, MinIO, Ceph...); AWS's own when unset.
    #[arg(long, env = "FERRY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The bucket that holds the files (required with `--storage s3`).
    #[arg(long, env = "FERRY_S3_BUCKET", required_if_eq("storage", "s3"))]
    pub s3_bucket: Option<String>,

    /// The bucket's region (Garage's default is `garage`).
    #[arg(long, env = "FERRY_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Keys begin with `PREFIX/`, so that several deployments can share one bucket.
    #[arg(long, env = "FERRY_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// Address the bucket as `bucket.host` instead of `host/bucket` (path style, the default).
    #[arg(long, env = "FERRY_S3_VIRTUAL_HOSTED")]
    pub s3_virtual_hosted: bool,

    /// Multipart uploads begun longer ago than this and never published (their replica crashed) are aborted by
    /// the sweep every replica runs; uploads must finish within it.
    #[arg(long, env = "FERRY_S3_SWEEP_AFTER", default_value = "24h", value_parser = humantime::parse_duration)]
    pub s3_sweep_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Local,
    S3,
}

impl StorageArgs {
    /// The bucket's settings with `--storage s3`.
    pub fn s3(&self) -> Option<crate::storage::S3Config> {
        (self.storage == StorageKind::S3).then(|| crate::storage::S3Config {
            endpoint: self.s3_endpoint.clone(),
            bucket: self.s3_bucket.clone().unwrap_or_default(),
            region: self.s3_region.clone(),
            virtual_hosted: self.s3_virtual_hosted,
            prefix: self.s3_prefix.clone(),
        })
    }
}

/// `ferry token`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The data directory whose `tokens` file to use.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// The tokens file, when not `<data-dir>/tokens`.
    #[arg(long, env = "FERRY_TOKENS_FILE", global = true)]
    pub tokens_file: Option<PathBuf>,

    #[command(subcommand)]
    pub action: TokenAction,
}

impl TokenArgs {
    pub fn tokens_path(&self) -> PathBuf {
        self.tokens_file.clone().unwrap_or_else(|| self.data_dir.join(TOKENS_FILE))
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Make a token, print it once, and store its hash (never the token) in the tokens file.
    Create {
        /// What the token is for; logged with each request it makes, and what `revoke` takes.
        #[arg(long)]
        name: String,
        /// What it may do: `upload`, `read`, `delete`, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
    },
    /// List the tokens' names and scopes.
    List,
    /// Remove a token; a running ferry stops accepting it within a second, without a restart.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// The tokens file's name in the data directory.
pub const TOKENS_FILE: &str = "tokens";

/// When requests need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// When the tokens file exists (at start or later).
    Auto,
    /// Always: without a tokens file, no token is valid.
    Token,
}

/// `ferry serve`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "FERRY_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Worker threads, each running its own event loop; 0 means one per core.
    #[arg(long, env = "FERRY_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Directory holding `files/` (published files and their metadata) and `tmp/` (uploads in progress).
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub storage: StorageArgs,

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

    /// Every request's head (request line and headers) must arrive within this, e.g. `10s`; a slower one
    /// closes the connection.
    #[arg(long, env = "FERRY_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// A kept-alive connection with no request for this long is closed, e.g. `5s`.
    #[arg(long, env = "FERRY_KEEP_ALIVE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub keep_alive: Duration,

    /// Free space the data volume keeps: an upload that would go below gets 507 (before its body when
    /// Content-Length tells), and readiness turns 503 below it. Default: the smaller of 1GiB and 5% of the volume.
    #[arg(long, env = "FERRY_MIN_FREE_BYTES", value_parser = parse_size)]
    pub min_free_bytes: Option<u64>,

    /// Serve Prometheus metrics at `/metrics` on this address, apart from the public port (e.g.
    /// `127.0.0.1:9100`); none when not given.
    #[arg(long, env = "FERRY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// How log lines are written: `text` (readable) or `json` (one object a line, for log shippers). Which lines
    /// is `RUST_LOG`'s (default `info`; `RUST_LOG=info,ferry::access=off` drops the access lines).
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Proxies whose `X-Forwarded-For` / `Forwarded` header names the client in the access log: IPs or CIDRs,
    /// comma-separated (e.g. `127.0.0.1,10.0.0.0/8`). From any other peer, those headers are ignored.
    #[arg(long, env = "FERRY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// On SIGTERM or SIGINT, how long readiness answers 503 while ferry still accepts connections, before the
    /// graceful stop begins: time for a load balancer to notice, e.g. `5s`. A second SIGINT stops at once.
    #[arg(long, env = "FERRY_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// On SIGTERM or SIGINT, how long requests in flight may take to finish before the server stops anyway,
    /// e.g. `30s`. A second SIGINT stops at once.
    #[arg(long, env = "FERRY_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// A resumable (tus) upload is removed this long after its last PATCH, e.g. `24h`; a finished one answers
    /// HEAD with its stored file's id until then.
    #[arg(long, env = "FERRY_TUS_EXPIRY", default_value = "24h", value_parser = humantime::parse_duration)]
    pub tus_expiry: Duration,

    /// Most connections open at once; beyond it, new ones wait to be accepted. 0 derives it from the
    /// file-descriptor limit (half of what is left after 64 kept for files), so connections never take the
    /// descriptors uploads and downloads need.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// `token` requires a bearer token on every operation but health and docs; `auto` does when the tokens
    /// file exists.
    #[arg(long, env = "FERRY_AUTH", value_enum, default_value_t = AuthMode::Auto)]
    pub auth: AuthMode,

    /// The tokens file (`ferry token create` writes it), when not `<data-dir>/tokens`.
    #[arg(long, env = "FERRY_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Listen on a non-loopback address without authentication (refused otherwise).
    #[arg(long, env = "FERRY_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Secret of the signed download links; by default one is made once in `<data-dir>/link-secret`.
    #[arg(long, env = "FERRY_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,

    /// Longest lifetime of a signed link, e.g. `1h`, `7days`.
    #[arg(long, env = "FERRY_MAX_LINK_TTL", default_value = "7days", value_parser = humantime::parse_duration)]
    pub max_link_ttl: Duration,

    /// An origin allowed to call ferry from a browser (CORS), e.g. `https://app.example`; repeatable, or `*`.
    /// Without it, no CORS headers are sent.
    #[arg(long, env = "FERRY_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
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
        let mut config = Cli::parse_from(["ferry"]).serve;
        config.data_dir = data_dir.into();
        config
    }

    /// `--max-connections`, with 0 resolved from the file-descriptor limit.
    pub fn connection_cap(&self) -> usize {
        match self.max_connections {
            0 => crate::server::default_max_connections(),
            n => n,
        }
    }

    /// `--tokens-file`, or `<data-dir>/tokens`.
    pub fn tokens_path(&self) -> PathBuf {
        self.tokens_file.clone().unwrap_or_else(|| self.data_dir.join(TOKENS_FILE))
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_upload_bytes: self.max_upload_bytes,
            max_buffered_bytes: self.max_buffered_bytes,
            body_idle_timeout: self.body_idle_timeout,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Cli::parse_from(["ferry"]).serve
    }
}

/// Upload limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: u64,
    pub max_buffered_bytes: u64,
    pub body_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Config::default().limits()
    }
}

/// An IP (one address) or a CIDR.
fn parse_net(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    match value.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ip.into()),
        Err(_) => value.parse::<ipnet::IpNet>().map_err(|_| format!("{value:?} is neither an IP nor a CIDR")),
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

    fn serve(args: &[&str]) -> Config {
        match Cli::parse_from(args).command() {
            Command::Serve(config) => *config,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn trusted_proxies_take_ips_and_cidrs() {
        let config = serve(&["ferry", "--trusted-proxies", "127.0.0.1, 10.0.0.0/8,::1"]);
        let nets: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert!(Cli::try_parse_from(["ferry", "--trusted-proxies", "nginx"]).is_err());
        assert_eq!(serve(&["ferry", "--log-format", "json"]).log_format, LogFormat::Json);
    }

    #[test]
    fn fsync_takes_an_explicit_value() {
        let config = serve(&["ferry", "--fsync", "false", "--body-idle-timeout", "2s"]);
        assert!(!config.fsync);
        assert_eq!(config.body_idle_timeout, Duration::from_secs(2));
    }

    #[test]
    fn serve_options_work_before_or_after_the_command() {
        let bare = serve(&["ferry", "--data-dir", "x", "--workers", "3"]);
        let named = serve(&["ferry", "serve", "--data-dir", "x", "--workers", "3"]);
        assert_eq!((bare.data_dir, bare.workers), (named.data_dir.clone(), named.workers));
        assert_eq!(named.data_dir, PathBuf::from("x"));
    }

    #[test]
    fn healthcheck_takes_only_its_own_options() {
        let Command::Healthcheck(probe) = Cli::parse_from(["ferry", "healthcheck", "--addr", "[::1]:9"]).command()
        else {
            panic!("not a healthcheck")
        };
        assert_eq!(probe.addr, "[::1]:9".parse().unwrap());
        assert!(Cli::try_parse_from(["ferry", "healthcheck", "--data-dir", "x"]).is_err());
    }

    #[test]
    fn fsck_takes_a_data_dir_and_repair() {
        let Command::Fsck(fsck) = Cli::parse_from(["ferry", "fsck", "--repair", "--data-dir", "x"]).command() else {
            panic!("not fsck")
        };
        assert!(fsck.repair);
        assert_eq!(fsck.data_dir, PathBuf::from("x"));
        assert!(Cli::try_parse_from(["ferry", "fsck", "--addr", "127.0.0.1:1"]).is_err());
    }
}
