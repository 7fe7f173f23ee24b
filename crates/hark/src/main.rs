//! The `hark` binary: `serve` runs the server; `keys`, `tokens` and `signing-keys` manage
//! credentials directly in the store (they work while a server is running).

mod config;
mod credentials;
mod logging;
mod serve;
mod telemetry;

use std::path::PathBuf;

/// jemalloc instead of the system allocator: glibc's malloc was about a quarter of a feed
/// read's CPU (with `malloc_consolidate` among the top symbols), and jemalloc keeps idle
/// memory near the system allocator's (mimalloc, also measured, idled at 34 MiB against
/// the 30 MB target). Measured in docs/benchmarks.md.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hark",
    version,
    about = "Notification infrastructure speaking Knock's API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; shared by every subcommand.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Directory for the embedded SQLite database (default ./.hark).
    #[arg(long, env = "HARK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (overrides --data-dir).
    #[arg(long, env = "HARK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "HARK_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the engine workers.
    Serve(serve::ServeArgs),
    /// API keys (secret `sk_…` and public `pk_…`) for an environment.
    Keys {
        #[command(subcommand)]
        command: credentials::KeysCommand,
    },
    /// Management API service tokens.
    Tokens {
        #[command(subcommand)]
        command: credentials::TokensCommand,
    },
    /// RSA keys that sign user tokens for enhanced security mode.
    SigningKeys {
        #[command(subcommand)]
        command: credentials::SigningKeysCommand,
    },
    /// Environment settings.
    Environments {
        #[command(subcommand)]
        command: credentials::EnvironmentsCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Keys { command } => credentials::keys(command).await,
        Command::Tokens { command } => credentials::tokens(command).await,
        Command::SigningKeys { command } => credentials::signing_keys(command).await,
        Command::Environments { command } => credentials::environments(command).await,
    }
}
