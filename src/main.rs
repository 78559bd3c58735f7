use std::process::ExitCode;

use clap::Parser;
use ferry::{
    config::{Cli, Command},
    health, openapi,
    startup::Application,
};

#[actix_web::main]
async fn main() -> std::io::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
            ignore_file_size_signal()?;
            let app = Application::build(&cli.config)?;
            log::info!("listening on http://{}  (Swagger UI at /docs)", app.local_addr());
            app.run_until_stopped().await?;
        }
        Command::Openapi => println!("{}", openapi::spec().to_pretty_json()?),
        Command::Healthcheck => {
            let healthy = health::probe(cli.config.addr).unwrap_or_else(|err| {
                eprintln!("ferry healthcheck: {err}");
                false
            });
            return Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A file-size limit (RLIMIT_FSIZE) must fail the one write that crosses it with EFBIG, which the upload
/// answers with 507, instead of killing the whole server with SIGXFSZ. tokio's handler replaces the default
/// action and is never unregistered, so the listener itself need not be kept.
fn ignore_file_size_signal() -> std::io::Result<()> {
    const SIGXFSZ: i32 = 25;
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ)).map(drop)
}
