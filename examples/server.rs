//! The whole platform in one process: the REST API and web UI, the edge, the
//! runtime, the queue and the store, chosen by a TOML file and flags.
//!
//! ```sh
//! cargo run --release --example server                      # Docker, gateway, memory queue, redb
//! cargo run --release --example server -- --runtime process # no Docker needed
//! cargo run --release --example server -- --help
//! ```
//!
//! Everything it does lives in `pilotlight::server`; this file is the command line.
#![allow(clippy::unwrap_used)] // a test or a tool: a failure should stop it loudly

use pilotlight::server::{Command, Server, ServerConfig};

#[path = "common/signal.rs"]
mod signal;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = match ServerConfig::from_args("server", std::env::args().skip(1)) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::Help(text)) => {
            println!("{text}");
            return std::process::ExitCode::SUCCESS;
        }
        Ok(_) => return std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("pilotlight is running");
    for line in server.summary() {
        println!("  {line}");
    }
    if server.token_created() {
        println!("\nAPI token (shown once; it stays in the token file above):\n  {}\n", server.token().reveal());
    }
    println!("Stop with Ctrl-C.");
    signal::stop_signal().await;
    println!("stopping: finishing requests in flight");
    server.shutdown().await;
    println!("stopped; the functions' instances keep running and the next start adopts them");
    std::process::ExitCode::SUCCESS
}
