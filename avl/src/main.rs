//! `avl`: run every AVL service in one process (`avl serve`) and reach them from the
//! command line, through a server when an endpoint is configured, or in-process on a
//! data directory otherwise.

// Printing is this binary's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// Prints a line to standard output, as `println!` does, except that a reader gone away
/// (`avl db query ... | head -1`) ends the command quietly instead of in a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}

mod configure;
mod db;
mod import;
mod progress;
mod queue;
mod serve;
mod storage;
mod system;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use avl_core::config::{DEFAULT_DATA_DIR, DEFAULT_PROFILE, ENV_DATA_DIR, ENV_PROFILE};
use avl_core::serve::TlsFiles;
use avl_core::{Client, ClientConfig, Error, Result, connect};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "avl",
    version,
    about = "AVL: an embeddable cloud platform. Serve every service in one process, or reach them from here.",
    long_about = None,
)]
struct Cli {
    /// Data directory for `serve` and for in-process commands.
    #[arg(long, global = true, env = ENV_DATA_DIR, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,

    /// Config file profile to use.
    #[arg(long, global = true, env = ENV_PROFILE, default_value = DEFAULT_PROFILE)]
    profile: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process, behind one HTTP endpoint.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4510")]
        listen: SocketAddr,
        /// TLS certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM); needs --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Address of the S3-compatible front of the object store.
        #[arg(long, default_value = "127.0.0.1:4511")]
        s3_listen: SocketAddr,
        /// Domain under which `BUCKET.DOMAIN` addresses a bucket on the S3 front
        /// (virtual-host style; IP addresses and other hosts are path style).
        #[arg(long, default_value = "localhost")]
        s3_domain: Vec<String>,
        /// Turn authentication off: anyone who can connect has every right.
        #[arg(long)]
        no_auth: bool,
        /// Abort multipart uploads left unfinished this many seconds after they began,
        /// reclaiming their parts (0: never; default 7 days, as S3's usual lifecycle rule).
        #[arg(long, value_name = "SECONDS", default_value_t = 7 * 24 * 3600)]
        abandoned_uploads_after: u64,
        /// Log line format (logs go to stderr; filter with AVL_LOG, e.g. `debug`).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Save an endpoint, key pair and region to the config file (asks when no flag is given).
    Configure {
        /// Endpoint URL, e.g. http://127.0.0.1:4510.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Access key id.
        #[arg(long)]
        access_key_id: Option<String>,
        /// Secret access key.
        #[arg(long)]
        secret_access_key: Option<String>,
        /// Region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Show the status of the deployment (server or in-process data directory).
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// The document database: databases, collections, documents.
    Db {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Event streams: topics, publishing, consumer groups.
    Queue {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: queue::QueueCommand,
    },
    /// The object store: buckets and objects (`aws s3`'s commands).
    Storage {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: storage::StorageCommand,
    },
}

/// Where client commands go.
#[derive(Debug, clap::Args)]
struct Target {
    /// Endpoint of a served deployment (overrides the config file and AVL_ENDPOINT);
    /// without any, the command runs in-process on --data-dir.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // s3s logs every rejected S3 request as an error; the access log already says how
    // each request ended.
    let filter =
        EnvFilter::try_from_env("AVL_LOG").unwrap_or_else(|_| EnvFilter::new("info,s3s::ops=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))
}

/// The client configuration: config file and environment, then the command line.
fn client_config(data_dir: &Path, profile: &str, target: &Target) -> Result<ClientConfig> {
    let mut config = ClientConfig::load_profile(profile)?;
    config.data_dir = data_dir.to_path_buf();
    if let Some(endpoint) = &target.endpoint {
        config.endpoint = Some(endpoint.clone());
    }
    Ok(config)
}

fn status(config: &ClientConfig) -> Result<()> {
    runtime()?.block_on(async {
        let client = Client::new(connect::<system::System>(config)?);
        let status = client.call(system::SystemRequest::Status).await?;
        let json = serde_json::to_string_pretty(&status)
            .map_err(|e| Error::internal(format!("cannot print status: {e}")))?;
        out!("{json}");
        Ok(())
    })
}

fn run(cli: Cli) -> Result<()> {
    let Cli {
        data_dir,
        profile,
        command,
    } = cli;
    match command {
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            s3_listen,
            s3_domain,
            no_auth,
            abandoned_uploads_after,
            log_format,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            };
            let args = serve::ServeArgs {
                data_dir,
                listen,
                tls,
                s3_listen,
                s3_domains: s3_domain,
                no_auth,
                abandoned_uploads_after: std::time::Duration::from_secs(abandoned_uploads_after),
            };
            init_logging(log_format);
            runtime()?.block_on(serve::run(args))
        }
        Command::Configure {
            endpoint,
            access_key_id,
            secret_access_key,
            region,
        } => configure::run(configure::ConfigureArgs {
            profile,
            endpoint,
            access_key_id,
            secret_access_key,
            region,
        }),
        Command::Status { target } => status(&client_config(&data_dir, &profile, &target)?),
        Command::Db { target, command } => {
            let config = client_config(&data_dir, &profile, &target)?;
            runtime()?.block_on(db::run(&config, command))
        }
        Command::Queue { target, command } => {
            let config = client_config(&data_dir, &profile, &target)?;
            runtime()?.block_on(queue::run(&config, command))
        }
        Command::Storage { target, command } => {
            let config = client_config(&data_dir, &profile, &target)?;
            runtime()?.block_on(storage::run(&config, command))
        }
    }
}

/// Writes a line to standard output; see [`out!`].
fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        stdout_failed(&e);
    }
}

/// Standard output failed: a closed pipe ends the command with the status of a process
/// that SIGPIPE ended (141), and prints nothing, as `cat` would; anything else is an
/// error line. (SIGPIPE itself stays ignored: it would also end a command whose server
/// closes the connection while it still writes, before it can say why.)
fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("error: Internal: cannot write to standard output: {e}");
    std::process::exit(1);
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // A usage mistake is one line with its code too (`--help` shows the usage):
            // clap's message up to its tips, on one line.
            let text = e.to_string();
            let message = text.split("\n\n").next().unwrap_or("");
            let message = message.strip_prefix("error: ").unwrap_or(message);
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("error: InvalidInput: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
