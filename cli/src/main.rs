//! `vmcloud`: one binary for the whole system. `main` parses arguments, sets up logging and
//! hands over to a subcommand.

mod account_cmd;
mod agent_cmd;
mod audit_cmd;
mod bench;
mod billing_cmd;
mod build_info;
mod client;
mod data_dir;
mod dev;
mod dev_pki;
mod duration;
mod firewall_cmd;
mod household_cmd;
mod incident_cmd;
mod ip_cmd;
mod job_cmd;
mod limits;
mod network_cmd;
mod node_cmd;
mod profile;
mod quota_cmd;
mod reservation_cmd;
mod scheduler_cmd;
mod session_cmd;
mod signals;
mod token_cmd;
mod webhook_cmd;

use std::process::ExitCode;
use std::sync::LazyLock;

use clap::{Parser, Subcommand, ValueEnum};

static VERSION: LazyLock<String> = LazyLock::new(build_info::long_version);

#[derive(Debug, Parser)]
#[command(name = "vmcloud", version = VERSION.as_str(), about = "VMCloud fleet: scheduler, node agent and API client")]
struct Cli {
    /// Log format (logs go to stderr; RUST_LOG filters them).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole fleet on this machine: scheduler, one agent, the API.
    Dev(dev::DevArgs),
    /// Run one replica of a multi-replica scheduler.
    Scheduler(scheduler_cmd::SchedulerArgs),
    /// Run the node agent: on this host's hardware, or simulated (`--sim --shape gpu-8xh100`).
    Agent(agent_cmd::AgentArgs),
    /// Cluster set-up.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage instances through the API.
    Instance {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::InstanceCommand,
    },
    /// AI batch jobs: submit, list (queue position, estimated start), get, cancel.
    Job {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: job_cmd::JobCommand,
    },
    /// Cloud-gaming sessions: launch, list (queue position, estimated start), get, end.
    Session {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: session_cmd::SessionCommand,
    },
    /// A gaming household: profiles, parental PIN and unlocks, library, launching as a
    /// profile; operators grant titles.
    Household {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: household_cmd::HouseholdCommand,
    },
    /// The game catalog: titles, their PEGI rating and GPU class.
    Titles {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Warm pools (operators): game VMs kept booted per region, GPU class and image — target,
    /// ready, booting, boot time, launches served warm in the last hour.
    WarmPools {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// The public status page: every region's services, incidents under way and to come.
    Status {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Incidents and maintenance windows on the status page (operators): declare, update.
    Incident {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: incident_cmd::IncidentCommand,
    },
    /// Sign up as a new customer (a trial organisation with a `default` project).
    Signup {
        #[command(flatten)]
        client: client::ClientArgs,
        #[arg(long)]
        email: String,
        /// Your organisation's name.
        #[arg(long)]
        org_name: String,
        /// Billing country, ISO code (FR, DE, …).
        #[arg(long)]
        country: String,
        /// company, person or household.
        #[arg(long, default_value = "person")]
        kind: String,
        /// EU VAT id (companies).
        #[arg(long)]
        vat_id: Option<String>,
        /// Read the password from standard input (otherwise VMCLOUD_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Confirm your email with the user id and token of the verification mail.
    VerifyEmail {
        #[command(flatten)]
        client: client::ClientArgs,
        user: String,
        #[arg(value_name = "TOKEN")]
        verification_token: String,
    },
    /// Log in (email + password, or an API key) and save a profile.
    Login {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        login: account_cmd::LoginArgs,
    },
    /// Two-step verification (TOTP) for your user: enrol, confirm, disable.
    Mfa {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: account_cmd::MfaCommand,
    },
    /// Sealed secrets: make a key file for `vmcloud scheduler --secrets-key`.
    Secrets {
        #[command(subcommand)]
        command: account_cmd::SecretsCommand,
    },
    /// End the login session of the profile.
    Logout {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Organisations: list, show (with members), create.
    Org {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: account_cmd::OrgCommand,
    },
    /// Users: invite a signed-up user into an organisation with a role.
    User {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: account_cmd::UserCommand,
    },
    /// A project's API keys: list, create (shown once), revoke.
    Key {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: account_cmd::KeyCommand,
    },
    /// Projects: list, create, delete, show; operators set fair share weight and gaming tier.
    Project {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: session_cmd::ProjectCommand,
    },
    /// Capacity held for your project, drawn on by reserved instances.
    Reservation {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: reservation_cmd::ReservationCommand,
    },
    /// The fleet's hosts: list, cordon, drain, maintenance, down, labels and pools (operators).
    Node {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: node_cmd::NodeCommand,
    },
    /// The API's contract: `vmcloud api spec` prints its OpenAPI 3.1 document.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// The audit trail: list, export as JSON lines, verify the hash chain.
    Audit {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Private networks: create (RFC 1918 subnet, a VNI of its own), list, get, delete.
    Network {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: network_cmd::NetworkCommand,
    },
    /// Firewalls: rules (`in tcp 22 203.0.113.0/24`), attach to and detach from instances.
    Firewall {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: firewall_cmd::FirewallCommand,
    },
    /// Floating IPs (take, assign, move, give back) and reverse DNS of public addresses.
    Ip {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: ip_cmd::IpCommand,
    },
    /// Quotas: limits and usage per region, requests for more; operators set and decide.
    Quota {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: quota_cmd::QuotaCommand,
    },
    /// Billing: usage and cost, forecast, invoices, credits; staff run months, record
    /// payments, void and credit.
    Billing {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: billing_cmd::BillingCommand,
    },
    /// Webhook endpoints: create (the secret is shown once), list, delete, send a test event;
    /// sign a body as deliveries are signed.
    Webhook {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: webhook_cmd::WebhookCommand,
    },
    /// Join tokens for new hosts (operators): create, list.
    Token {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: token_cmd::TokenCommand,
    },
    /// Simulated fleets.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Benchmarks that print our figure beside the budget in DESIGN.md §6.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Create the cluster CA and the scheduler replicas' certificates.
    Init(scheduler_cmd::ClusterInitArgs),
    /// Show the Raft group as the replica at --api sees it.
    Status {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Add a replica (started with `vmcloud scheduler --join`) to the group (send it to the leader).
    Join {
        /// Raft id of the new replica.
        #[arg(long)]
        id: u64,
        /// Its raft link address, HOST:PORT (UDP).
        #[arg(long)]
        raft_address: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Remove a replica from the group (send it to the leader).
    Leave {
        /// Raft id of the replica.
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Hand leadership to another replica (send it to the leader).
    TransferLeader {
        /// Raft id of the replica that should lead.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// API create → running on the agent, against a running fleet (`vmcloud dev`).
    Create {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: bench::create::CreateBenchArgs,
    },
    /// Authenticated API reads/s and latency per replica, over many API keys, against a
    /// running fleet (`vmcloud dev`).
    Api {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: bench::api::ApiBenchArgs,
    },
    /// Webhook deliveries/s and commit → delivery latency against a running fleet
    /// (`vmcloud dev`), to a receiver in this process.
    Webhooks {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        args: bench::webhooks::WebhookBenchArgs,
    },
    /// Raft commits/s, latency and failover: replicas over QUIC on loopback, fsync on.
    Raft(bench::raft::RaftBenchArgs),
    /// Placement decision latency over a generated fleet.
    Placement(bench::placement::PlacementBenchArgs),
    /// Placements committed/s through a Raft group of scheduler replicas over a generated fleet.
    Schedule(bench::schedule::ScheduleBenchArgs),
    /// RSS and CPU share of an idle agent process with VMs defined (libvirt test driver).
    AgentIdle(bench::agent_idle::AgentIdleBenchArgs),
    /// Many simulated agents on a scheduler cluster over real QUIC + mTLS: registration, the
    /// leader's CPU and memory, heartbeat handling, and a kill -9 failover.
    Fleet(bench::fleet::FleetBenchArgs),
    /// API writes through a follower while the leader of a real scheduler group is killed
    /// (kill -9) or paused (kill -STOP): how long until writes are acknowledged again, and
    /// that each was applied once.
    Failover(bench::failover::FailoverBenchArgs),
    /// The replicated state at a million instances: memory per instance, snapshot write and
    /// restore, apply pauses while a snapshot is written, memory growth with history.
    State(bench::state::StateBenchArgs),
    /// The audit trail at millions of events: memory before and after (flat), the time to
    /// serve a filtered page.
    Audit(bench::audit::AuditBenchArgs),
    /// Billable intervals rated per second on one core (the billing crate's pure rating).
    Rating(bench::rating::RatingBenchArgs),
    /// A monthly billing run of many organisations through a Raft group of replicas: total
    /// time and the longest apply of one entry.
    BillingRun(bench::billing_run::BillingRunBenchArgs),
    /// Game launches from warm pools through a scheduler cluster: launches/s, request →
    /// connection details p50/p99, the share served warm.
    Launch(bench::launch::LaunchBenchArgs),
    /// The NOC's pages over a generated fleet: server-side time of the fleet page and a host
    /// page (budget p99 ≤ 50 ms at 10,000 hosts).
    Pages(bench::pages::PagesBenchArgs),
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Print the OpenAPI 3.1 document of this build's API (what `GET /v1/openapi.json`
    /// serves).
    Spec,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Generate a fleet (seeded) and print its summary as JSON.
    Fleet(bench::placement::FleetArgs),
    /// Replay a seeded month of arrivals and departures on an empty fleet through the
    /// production planner: stranded GPUs, refused 8-GPU requests, GPU-hours filled.
    Efficiency(bench::efficiency::EfficiencyArgs),
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Dev(_) | Command::Scheduler(_) | Command::Agent(_) => {
            "info,raft=warn,quinn=warn,rustls=warn"
        }
        Command::Cluster { .. } => "warn",
        Command::Instance { .. }
        | Command::Node { .. }
        | Command::Token { .. }
        | Command::Audit { .. }
        | Command::Api { .. }
        | Command::Quota { .. }
        | Command::Network { .. }
        | Command::Firewall { .. }
        | Command::Ip { .. }
        | Command::Webhook { .. }
        | Command::Billing { .. }
        | Command::Reservation { .. }
        | Command::Job { .. }
        | Command::Session { .. }
        | Command::Household { .. }
        | Command::Titles { .. }
        | Command::WarmPools { .. }
        | Command::Status { .. }
        | Command::Incident { .. }
        | Command::Project { .. }
        | Command::Signup { .. }
        | Command::VerifyEmail { .. }
        | Command::Login { .. }
        | Command::Mfa { .. }
        | Command::Secrets { .. }
        | Command::Logout { .. }
        | Command::Org { .. }
        | Command::User { .. }
        | Command::Key { .. }
        | Command::Bench { .. }
        | Command::Sim { .. } => "warn",
    };
    init_logging(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Scheduler(args) => scheduler_cmd::run(args).await,
            Command::Agent(args) => agent_cmd::run(args).await,
            Command::Cluster {
                command: ClusterCommand::Init(args),
            } => scheduler_cmd::init(args),
            Command::Cluster {
                command: ClusterCommand::Status { client },
            } => client::cluster_status(client).await,
            Command::Cluster {
                command: ClusterCommand::TransferLeader { to, client },
            } => client::transfer_leader(client, to).await,
            Command::Cluster {
                command:
                    ClusterCommand::Join {
                        id,
                        raft_address,
                        client,
                    },
            } => client::cluster_join(client, id, raft_address).await,
            Command::Cluster {
                command: ClusterCommand::Leave { id, client },
            } => client::cluster_leave(client, id).await,
            Command::Instance { client, command } => client::run(client, command).await,
            Command::Node { client, command } => node_cmd::run(client, command).await,
            Command::Job { client, command } => job_cmd::run(client, command).await,
            Command::Session { client, command } => session_cmd::run(client, command).await,
            Command::Household { client, command } => household_cmd::run(client, command).await,
            Command::Titles { client } => household_cmd::titles(client).await,
            Command::WarmPools { client } => household_cmd::warm_pools(client).await,
            Command::Status { client } => incident_cmd::status(client).await,
            Command::Incident { client, command } => incident_cmd::run(client, command).await,
            Command::Project { client, command } => session_cmd::run_project(client, command).await,
            Command::Signup {
                client,
                email,
                org_name,
                country,
                kind,
                vat_id,
                password_stdin,
            } => {
                account_cmd::signup(
                    client,
                    email,
                    org_name,
                    country,
                    kind,
                    vat_id,
                    password_stdin,
                )
                .await
            }
            Command::VerifyEmail {
                client,
                user,
                verification_token,
            } => account_cmd::verify_email(client, user, verification_token).await,
            Command::Login { client, login } => account_cmd::login(client, login).await,
            Command::Mfa { client, command } => account_cmd::run_mfa(client, command).await,
            Command::Secrets { command } => account_cmd::run_secrets(command),
            Command::Logout { client } => account_cmd::logout(client).await,
            Command::Org { client, command } => account_cmd::run_org(client, command).await,
            Command::User { client, command } => account_cmd::run_user(client, command).await,
            Command::Key { client, command } => account_cmd::run_key(client, command).await,
            Command::Reservation { client, command } => reservation_cmd::run(client, command).await,
            Command::Token { client, command } => token_cmd::run(client, command).await,
            Command::Audit { client, command } => audit_cmd::run(client, command).await,
            Command::Api {
                command: ApiCommand::Spec,
            } => {
                let doc =
                    vmcloud_scheduler::api::openapi::document(&build_info::build_info().version);
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            }
            Command::Quota { client, command } => quota_cmd::run(client, command).await,
            Command::Billing { client, command } => billing_cmd::run(client, command).await,
            Command::Network { client, command } => network_cmd::run(client, command).await,
            Command::Firewall { client, command } => firewall_cmd::run(client, command).await,
            Command::Ip { client, command } => ip_cmd::run(client, command).await,
            Command::Webhook { client, command } => webhook_cmd::run(client, command).await,
            Command::Bench {
                command: BenchCommand::Create { client, args },
            } => bench::create::create(client, args).await,
            Command::Bench {
                command: BenchCommand::Api { client, args },
            } => bench::api::api(client, args).await,
            Command::Bench {
                command: BenchCommand::Webhooks { client, args },
            } => bench::webhooks::webhooks(client, args).await,
            Command::Bench {
                command: BenchCommand::Raft(args),
            } => bench::raft::raft(args).await,
            Command::Bench {
                command: BenchCommand::Placement(args),
            } => bench::placement::placement(args),
            Command::Bench {
                command: BenchCommand::Schedule(args),
            } => bench::schedule::schedule(args).await,
            Command::Bench {
                command: BenchCommand::AgentIdle(args),
            } => bench::agent_idle::agent_idle(args).await,
            Command::Bench {
                command: BenchCommand::Fleet(args),
            } => bench::fleet::fleet(args).await,
            Command::Bench {
                command: BenchCommand::Failover(args),
            } => bench::failover::failover(args).await,
            Command::Bench {
                command: BenchCommand::Launch(args),
            } => bench::launch::launch(args).await,
            Command::Bench {
                command: BenchCommand::Pages(args),
            } => bench::pages::pages(args),
            Command::Bench {
                command: BenchCommand::State(args),
            } => bench::state::state(args),
            Command::Bench {
                command: BenchCommand::Audit(args),
            } => bench::audit::audit(args),
            Command::Bench {
                command: BenchCommand::Rating(args),
            } => bench::rating::rating(args),
            Command::Bench {
                command: BenchCommand::BillingRun(args),
            } => bench::billing_run::billing_run(args).await,
            Command::Sim {
                command: SimCommand::Fleet(args),
            } => bench::placement::fleet(args),
            Command::Sim {
                command: SimCommand::Efficiency(args),
            } => bench::efficiency::efficiency(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
