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
