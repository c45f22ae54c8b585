//! `vmcloud-agent`: the node agent alone — `vmcloud agent` without the scheduler, the pages,
//! billing and the client commands linked in (docs/decisions/0015-lean-agent-binary.md). Same
//! flags, same environment (`VMCLOUD_AGENT_*`), same data directory as `vmcloud agent`; the
//! ansible role installs it on hosts.

// The agent's modules of the `vmcloud` binary, compiled again here: what the agent does not
// call of them (the scheduler's side of the data directory, say) is unused in this binary.
#[allow(dead_code)]
#[path = "../agent_cmd.rs"]
mod agent_cmd;
#[allow(dead_code)]
#[path = "../build_info.rs"]
mod build_info;
#[allow(dead_code)]
#[path = "../data_dir.rs"]
mod data_dir;
#[allow(dead_code)]
#[path = "../duration.rs"]
mod duration;
#[allow(dead_code)]
#[path = "../limits.rs"]
mod limits;
#[allow(dead_code)]
#[path = "../signals.rs"]
mod signals;

use std::process::ExitCode;
use std::sync::LazyLock;

use clap::Parser;

static VERSION: LazyLock<String> = LazyLock::new(build_info::long_version);

#[derive(Debug, Parser)]
#[command(name = "vmcloud-agent", version = VERSION.as_str(), about = "VMCloud node agent: VMs through libvirt, tenant networks, GPUs, the link to the scheduler")]
struct Cli {
    /// Log format (logs go to stderr; RUST_LOG filters them).
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(flatten)]
    agent: agent_cmd::AgentArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,raft=warn,quinn=warn,rustls=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    // Two workers are plenty for one host's agent (libvirt calls run on blocking threads);
    // a worker per core would cost memory on a 128-core host and buy nothing.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent_cmd::run(cli.agent)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
