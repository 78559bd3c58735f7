use std::{
    io::{self, Write},
    process::ExitCode,
};

use clap::Parser;
use ferry::{
    auth,
    config::{Cli, Command, Limits, TokenAction, TokenArgs},
    fsck, health, openapi,
    startup::Application,
};

#[actix_web::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command() {
        Command::Fsck(options) => return check(&options),
        Command::Serve(config) => serve(&config).await,
        Command::Openapi => print_spec(),
        Command::Healthcheck(probe) => match health::probe(probe.addr, probe.timeout) {
            Ok(()) => Ok(()),
            Err(problem) => Err(format!("unhealthy: {problem}")),
        },
        Command::Token(args) => token(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("ferry: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &ferry::config::Config) -> Result<(), String> {
    ferry::logging::init(config.log_format);
    ignore_file_size_signal().map_err(|err| format!("cannot set up signal handling: {err}"))?;
    let app = Application::build(config).map_err(|err| err.to_string())?;
    app.stop_on_signals().map_err(|err| format!("cannot set up signal handling: {err}"))?;
    log::info!("listening on http://{}  (Swagger UI at /docs)", app.local_addr());
    app.run_until_stopped().await.map_err(|err| format!("the server stopped: {err}"))?;
    log::info!("stopped");
    Ok(())
}

/// `ferry fsck`: 0 when every file is sound, 1 when some are damaged (repaired or not: a scheduled run should
/// tell), 2 when the check could not run.
fn check(options: &ferry::config::Fsck) -> ExitCode {
    let out = &mut io::stdout().lock();
    let verdict = match options.storage.s3() {
        None => fsck::run(&options.data_dir, options.repair, out),
        Some(_) if options.repair => {
            Err("--repair works on local disk only; on S3, fsck reports and changes nothing".into())
        }
        Some(s3) => fsck::run_s3(&s3, out),
    };
    match verdict {
        Ok(fsck::Verdict::Clean) => ExitCode::SUCCESS,
        Ok(fsck::Verdict::Damaged) => ExitCode::from(1),
        Err(problem) => {
            eprintln!("ferry: {problem}");
            ExitCode::from(2)
        }
    }
}

/// `ferry token create|list|revoke`.
fn token(args: &TokenArgs) -> Result<(), String> {
    let path = args.tokens_path();
    let file = path.display();
    match &args.action {
        TokenAction::Create { name, scopes } => {
            let token =
                auth::create_token(&path, name, scopes).map_err(|err| format!("cannot create the token: {err}"))?;
            let scopes: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
            eprintln!("created token {name} ({}) in {file}; it is shown only this once:", scopes.join(","));
            println!("{token}");
        }
        TokenAction::List => {
            for entry in auth::list_tokens(&path).map_err(|err| format!("cannot read {file}: {err}"))? {
                let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.name()).collect();
                println!("{}\t{}", entry.name, scopes.join(","));
            }
        }
        TokenAction::Revoke { name } => {
            if !auth::revoke_token(&path, name).map_err(|err| format!("cannot revoke in {file}: {err}"))? {
                return Err(format!("no token named {name} in {file}"));
            }
            eprintln!("revoked token {name}; a running ferry refuses it within a second");
        }
    }
    Ok(())
}

/// `ferry openapi | head` closes the pipe early; that is not an error.
fn print_spec() -> Result<(), String> {
    let json = openapi::spec(&Limits::default()).to_pretty_json().map_err(|err| err.to_string())?;
    match writeln!(io::stdout().lock(), "{json}") {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(format!("cannot write the document: {err}")),
        _ => Ok(()),
    }
}

/// A file-size limit (RLIMIT_FSIZE) must fail the one write that crosses it with EFBIG, which the upload
/// answers with 507, instead of killing the whole server with SIGXFSZ. tokio's handler replaces the default
/// action and is never unregistered, so the listener itself need not be kept.
fn ignore_file_size_signal() -> io::Result<()> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ)).map(drop)
}
