//! `feitian`: a self-hosted cloud that speaks the Alibaba Cloud API.

mod accounts;
mod ca;
mod compute;
mod config;
mod disks;
mod doctor;
mod image_cli;
mod image_tasks;
mod keys;
mod sgcheck;
mod signals;
mod snapshots;
mod storage;
mod up;

use clap::{Parser, Subcommand};

/// Answers are built from many small allocations (maps, strings); mimalloc handles that
/// pattern several times faster than the system allocator under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "feitian", version, about = "A self-hosted cloud that speaks the Alibaba Cloud API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where feitian keeps its state, when `--data-dir` is not given.
fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FEITIAN_DATA_DIR") {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/feitian"),
        None => PathBuf::from("feitian-data"),
    }
}

#[derive(clap::Args, Clone)]
struct DataDir {
    /// The data directory [default: $FEITIAN_DATA_DIR, else ~/.local/share/feitian]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a single-node region on the embedded default (no external service needed).
    Up {
        #[command(flatten)]
        data: DataDir,
        /// The address of the API edge (RPC and, later, OSS), also usable as HTTP_PROXY.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8100")]
        listen: String,
        /// A TOML configuration file (regions and zones); see docs/configuration.md.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where the Pangu master listens for chunkservers (`feitian chunkserver --master`).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8101")]
        pangu_listen: String,
    },
    /// Print the certificate of the edge's CA (PEM), for HTTPS clients to trust; made on
    /// first use, the same one `feitian up` serves with. See docs/https.md.
    Ca {
        /// Write it to FILE instead of printing it.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Join a chunkserver (a storage node) to a Pangu master, e.g. a `feitian up`'s.
    Chunkserver(storage::ChunkserverArgs),
    /// Say which real components this host offers, and what to install for the missing ones.
    Doctor {
        #[command(flatten)]
        data: DataDir,
    },
    /// Manage accounts (tenants).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage AccessKey pairs.
    Accesskey {
        #[command(subcommand)]
        command: AccessKeyCommand,
    },
    /// Custom images from disk files on this machine.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Ask the security-group evaluator about connections (no root needed).
    SecurityGroup {
        #[command(subcommand)]
        command: SecurityGroupCommand,
    },
}

#[derive(Subcommand)]
enum SecurityGroupCommand {
    /// Read cases as JSON lines on stdin and say, one JSON line each, whether the groups of
    /// the VPC allow them and why (the same world the data plane enforces).
    Evaluate {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import a RAW, QCOW2 or VHD disk file as a custom image (ImportImage without the
    /// upload), with progress; prints the new image's id. A `feitian up` on the same data
    /// directory does the work, reading the file where it is.
    Import {
        /// The disk file.
        file: PathBuf,
        /// The image's name (ImageName) [default: its id].
        #[arg(long)]
        name: Option<String>,
        /// The account that owns the image.
        #[arg(long, default_value = "root")]
        account: String,
        /// The region [default: the configuration's first].
        #[arg(long)]
        region: Option<String>,
        /// The OS distribution the image holds (Platform), e.g. Debian.
        #[arg(long)]
        platform: Option<String>,
        /// The configuration file `feitian up` runs with (regions, quotas).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account and its first AccessKey pair (printed once, as JSON).
    Create {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Show an account's quotas, or set them (`vcpus=16 eips=5`; `vcpus=default` goes back
    /// to the configuration's default). A running `feitian up` enforces a change at once.
    Quota {
        name: String,
        /// `key=value` settings; none shows every quota.
        settings: Vec<String>,
        /// The configuration file `feitian up` runs with (for the defaults shown).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum AccessKeyCommand {
    /// Create another AccessKey pair for an account (printed once, as JSON).
    Create {
        #[arg(long, value_name = "NAME")]
        account: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the AccessKeys (id, account, status, created; never a secret).
    List {
        /// Only this account's keys.
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Refuse a key's requests (InvalidAccessKeyId.Inactive) until it is enabled again; a
    /// running `feitian up` honours it within a second. Not the root account's last active key.
    Disable {
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Accept a disabled key's requests again.
    Enable {
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Delete a key for good (InvalidAccessKeyId.NotFound). Not the root account's last
    /// active key.
    Delete {
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    // Everything feitian writes (the database and its journal, credentials) is private.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEITIAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { data, listen, config, pangu_listen } => {
            up::run(&data.path(), &listen, &pangu_listen, config.as_deref())
        }
        Command::Ca { export, data } => ca::run(&data.path(), export.as_deref()),
        Command::Chunkserver(args) => storage::run_chunkserver(args),
        Command::Doctor { data } => doctor::run(&data.path()),
        Command::SecurityGroup { command: SecurityGroupCommand::Evaluate { data } } => sgcheck::run(&data.path()),
        Command::Account { command: AccountCommand::Create { name, data } } => {
            accounts::create_account(&data.path(), &name)
        }
        Command::Image { command: ImageCommand::Import { file, name, account, region, platform, config, data } } => {
            image_cli::import(
                &data.path(),
                image_cli::ImportArgs {
                    file: &file,
                    name,
                    account: &account,
                    region: region.as_deref(),
                    platform,
                    config: config.as_deref(),
                },
            )
        }
        Command::Account { command: AccountCommand::List { data } } => accounts::list_accounts(&data.path()),
        Command::Account { command: AccountCommand::Quota { name, settings, config, data } } => {
            accounts::quota(&data.path(), &name, &settings, config.as_deref())
        }
        Command::Accesskey { command: AccessKeyCommand::Create { account, data } } => {
            accounts::create_key(&data.path(), &account)
        }
        Command::Accesskey { command: AccessKeyCommand::List { account, data } } => {
            accounts::list_keys(&data.path(), account.as_deref())
        }
        Command::Accesskey { command: AccessKeyCommand::Disable { id, data } } => {
            accounts::set_key_status(&data.path(), &id, feitian_meta::account::AccessKeyStatus::Inactive)
        }
        Command::Accesskey { command: AccessKeyCommand::Enable { id, data } } => {
            accounts::set_key_status(&data.path(), &id, feitian_meta::account::AccessKeyStatus::Active)
        }
        Command::Accesskey { command: AccessKeyCommand::Delete { id, data } } => {
            accounts::delete_key(&data.path(), &id)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
