//! Customer commands: sign up, verify, log in and out (browser-less), organisations,
//! projects and API keys. `vmcloud login` stores the login token (or an API key) in a
//! profile, as `vmcloud dev` stores the dev key.

use std::io::BufRead;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output};
use crate::profile;

/// The password: `--password-stdin` reads one line from standard input, otherwise
/// `VMCLOUD_PASSWORD`.
fn password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    std::env::var("VMCLOUD_PASSWORD")
        .map_err(|_| anyhow!("no password: pipe it with --password-stdin, or set VMCLOUD_PASSWORD"))
}

fn print(args: &ClientArgs, value: &Value, table: impl FnOnce(&Value)) -> anyhow::Result<()> {
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        table(value);
    }
    Ok(())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// `vmcloud signup`.
pub async fn signup(
    args: ClientArgs,
    email: String,
    org_name: String,
    country: String,
    kind: String,
    vat_id: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let body = json!({
        "email": email,
        "password": password(password_stdin)?,
        "organisation": {"name": org_name, "kind": kind, "billing_country": country, "vat_id": vat_id},
    });
    let made = client
        .call(Method::POST, "/v1/signup", Some(body), false)
        .await?
        .unwrap_or_default();
    print(&args, &made, |v| {
        println!(
            "signed up: user {}, organisation {}, project {}\nopen the link in the mail sent to {email} (or run the `vmcloud verify-email` it shows), then `vmcloud login`",
            s(v, "user_id"),
            s(v, "organisation_id"),
            s(v, "project_id")
        )
    })
}

/// `vmcloud verify-email USER TOKEN`.
pub async fn verify_email(args: ClientArgs, user: String, token: String) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let path = format!("/v1/verify-email?user={user}&token={token}");
    let answer = client
        .call(Method::GET, &path, None, false)
        .await?
        .unwrap_or_default();
    print(&args, &answer, |_| {
        println!("email verified; now `vmcloud login`")
    })
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[arg(long)]
    email: Option<String>,
    /// Use this API key (vmc_…) instead of a password.
    #[arg(long)]
    key: Option<String>,
    /// Read the password from standard input (otherwise VMCLOUD_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    /// The authenticator app's current 6-digit code (accounts with two-step verification).
    #[arg(long, value_name = "CODE")]
    totp: Option<String>,
    /// Or one of the recovery codes (each works once).
    #[arg(long, value_name = "CODE", conflicts_with = "totp")]
    recovery_code: Option<String>,
    /// The project this profile acts in (for a user with several).
    #[arg(long)]
    project: Option<String>,
    /// Profile to save the login in.
    #[arg(long, default_value = "default")]
    save_as: String,
}

/// `vmcloud login`: email + password (+ a TOTP code), or an API key; saves a profile.
pub async fn login(args: ClientArgs, login: LoginArgs) -> anyhow::Result<()> {
    let LoginArgs {
        email,
        key,
        password_stdin,
        totp,
        recovery_code,
        project,
        save_as,
    } = login;
    let client = Client::new(&ClientArgs {
        token: None,
        ..args.clone()
    })?;
    let api = client.api().to_owned();
    let token = match (email, key) {
        (Some(email), None) => {
            let body = json!({
                "email": email,
                "password": password(password_stdin)?,
                "totp_code": totp,
                "recovery_code": recovery_code,
            });
            let answer = client
                .call(Method::POST, "/v1/login", Some(body), false)
                .await?
                .unwrap_or_default();
            answer["token"]
                .as_str()
                .ok_or_else(|| anyhow!("the API answered a login without a token"))?
                .to_owned()
        }
        (None, Some(key)) => key,
        _ => bail!("log in with --email (and a password), or with --key <API key>"),
    };
    let path = profile::save_profile(
        &save_as,
        profile::Profile {
            api,
            token,
            project,
        },
    )?;
    println!("logged in; profile `{save_as}` saved in {}", path.display());
    Ok(())
}

/// `vmcloud logout`: ends the login session of the profile.
pub async fn logout(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    client.call(Method::POST, "/v1/logout", None, false).await?;
    println!("logged out");
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Your organisations.
    List,
    /// Show one, with its members.
    Get { id: String },
    /// A new organisation you own (it starts with a `default` project).
    Create {
        name: String,
        /// ISO country code, e.g. FR.
        #[arg(long)]
        country: String,
        /// company, person or household.
        #[arg(long, default_value = "company")]
        kind: String,
        /// EU VAT id (companies).
        #[arg(long)]
        vat_id: Option<String>,
    },
    /// Operators: the API requests an hour each of an organisation's keys and users may make.
    RateLimit {
        id: String,
        /// Requests an hour (0: the default again).
        #[arg(long)]
        per_hour: u32,
    },
}

pub async fn run_org(args: ClientArgs, command: OrgCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let value = match command {
        OrgCommand::List => Some(
            client
                .list_all("/v1/organisations", "organisations")
                .await?,
        ),
        OrgCommand::Get { id } => client
            .call(Method::GET, &format!("/v1/organisations/{id}"), None, true)
            .await?
            .ok_or_else(|| anyhow!("organisation {id} does not exist"))
            .map(Some)?,
        OrgCommand::Create {
            name,
            country,
            kind,
            vat_id,
        } => {
            let body =
                json!({"name": name, "billing_country": country, "kind": kind, "vat_id": vat_id});
            client
                .call(Method::POST, "/v1/organisations", Some(body), false)
                .await?
        }
        OrgCommand::RateLimit { id, per_hour } => {
            client
                .call(
                    Method::PUT,
                    &format!("/v1/organisations/{id}/rate-limit"),
                    Some(json!({ "per_hour": per_hour })),
                    false,
                )
                .await?
        }
    }
    .unwrap_or_default();
    print(&args, &value, |v| {
        let rows = v["organisations"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![v.clone()]);
        println!(
            "{:<22} {:<28} {:<9} {:<7} MEMBERS",
            "ID", "NAME", "KIND", "COUNTRY"
        );
        for o in rows {
            let members: Vec<String> = o["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|m| format!("{} ({})", s(m, "email"), s(m, "role")))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{:<22} {:<28} {:<9} {:<7} {}",
                s(&o, "id"),
                s(&o, "name"),
                s(&o, "kind"),
                s(&o, "billing_country"),
                members.join(", ")
            );
        }
    })
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Give a signed-up user a role in an organisation (owner, admin, billing, member,
    /// viewer).
    Invite {
        email: String,
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
}

pub async fn run_user(args: ClientArgs, command: UserCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let UserCommand::Invite { email, org, role } = command;
    let value = client
        .call(
            Method::POST,
            &format!("/v1/organisations/{org}/members"),
            Some(json!({"email": email, "role": role})),
            false,
        )
        .await?
        .unwrap_or_default();
    print(&args, &value, |_| {
        println!("{email} is now {role} of {org}")
    })
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// The project's API keys (never their secrets).
    List {
        #[arg(long)]
        project: String,
    },
    /// A new key; prints it once.
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        /// project-admin, project-member or project-viewer (read-only).
        #[arg(long, default_value = "project-member")]
        role: String,
        /// Days until it stops working (default: until revoked).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a key: every replica refuses it from then on.
    Revoke {
        #[arg(long)]
        project: String,
        key_id: String,
    },
}

pub async fn run_key(args: ClientArgs, command: KeyCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    match command {
        KeyCommand::List { project } => {
            let keys = client
                .list_all(&format!("/v1/projects/{project}/keys"), "keys")
                .await?;
            print(&args, &keys, |v| {
                println!(
                    "{:<18} {:<20} {:<15} {:<21} STATUS",
                    "ID", "NAME", "ROLE", "EXPIRES"
                );
                for k in v["keys"].as_array().into_iter().flatten() {
                    let status = if k["revoked_at"].is_string() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<18} {:<20} {:<15} {:<21} {status}",
                        s(k, "id"),
                        s(k, "name"),
                        s(k, "role"),
                        k["expires_at"].as_str().unwrap_or("never")
                    );
                }
            })
        }
        KeyCommand::Create {
            project,
            name,
            role,
            expires_in_days,
        } => {
            let body = json!({"name": name, "role": role, "expires_in_days": expires_in_days});
            let key = client
                .call(
                    Method::POST,
                    &format!("/v1/projects/{project}/keys"),
                    Some(body),
                    false,
                )
                .await?
                .unwrap_or_default();
            print(&args, &key, |v| println!("{}", s(v, "token")))
        }
        KeyCommand::Revoke { project, key_id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/projects/{project}/keys/{key_id}"),
                    None,
                    false,
                )
                .await?;
            println!("key {key_id} revoked");
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// Start TOTP enrolment: prints the otpauth:// URL and the secret to put in an
    /// authenticator app (the console shows a QR code).
    Enrol,
    /// Finish enrolment with the app's current code; prints the recovery codes, once.
    Confirm { code: String },
    /// Turn two-step verification off (from a login that used a code).
    Disable,
}

pub async fn run_mfa(args: ClientArgs, command: MfaCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    match command {
        MfaCommand::Enrol => {
            let v = client
                .call(Method::POST, "/v1/me/totp", None, false)
                .await?
                .unwrap_or_default();
            print(&args, &v, |v| {
                println!(
                    "add this to your authenticator app:\n  {}\nor type the secret: {}\nthen run `vmcloud mfa confirm <code>` with the code it shows",
                    s(v, "otpauth_url"),
                    s(v, "secret")
                )
            })
        }
        MfaCommand::Confirm { code } => {
            let v = client
                .call(
                    Method::POST,
                    "/v1/me/totp/confirm",
                    Some(json!({ "code": code })),
                    false,
                )
                .await?
                .unwrap_or_default();
            print(&args, &v, |v| {
                println!(
                    "two-step verification is on. Recovery codes (each works once; keep them safe):"
                );
                for c in v["recovery_codes"].as_array().into_iter().flatten() {
                    println!("  {}", c.as_str().unwrap_or_default());
                }
                println!("log in again with --totp <code> to use it");
            })
        }
        MfaCommand::Disable => {
            client
                .call(Method::DELETE, "/v1/me/totp", None, false)
                .await?;
            println!("two-step verification is off");
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a new random secrets key (64 hex digits); put it first in the key file of
    /// every replica (`--secrets-key`) to seal with it.
    NewKey,
}

pub fn run_secrets(command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::NewKey => {
            println!("{}", vmcloud_scheduler::secrets::SecretsKey::new_key_line());
            Ok(())
        }
    }
}
