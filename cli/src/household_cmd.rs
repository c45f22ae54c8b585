//! `vmcloud household ...` (a gaming household: profiles, parental PIN and unlocks, library,
//! launching as a profile; operators grant entitlements) and `vmcloud titles` (the catalog).
//! A household profile is `--player pf-…` (`--profile` names the CLI's own profile).

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum HouseholdCommand {
    /// The household: plan, hours this month, profiles, PIN, entitlements.
    Show { household: String },
    /// Add a profile (the owner). Kids get a birth year (their PEGI limit follows), minutes a
    /// day and the hours they may play.
    AddProfile {
        household: String,
        name: String,
        #[arg(long)]
        kid: bool,
        #[arg(long, requires = "kid")]
        birth_year: Option<i32>,
        /// Minutes a day.
        #[arg(long, requires = "kid")]
        daily_limit: Option<u32>,
        /// FROM-TO hours of the household's day, e.g. 14-19.
        #[arg(long, requires = "kid")]
        hours: Option<String>,
        /// A member who logs in and plays as this profile (a user id).
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove a profile (the owner).
    RemoveProfile { household: String, profile: String },
    /// Set the parental PIN (the owner; read from standard input or VMCLOUD_PIN).
    Pin {
        household: String,
        /// The household's time zone, minutes east of UTC (default 60).
        #[arg(long, allow_hyphen_values = true)]
        utc_offset: Option<i32>,
    },
    /// Unlock a title above a kid's age rating for their next session, with the parental PIN
    /// (standard input or VMCLOUD_PIN).
    Unlock {
        household: String,
        /// The household profile (pf-…).
        #[arg(long)]
        player: String,
        #[arg(long)]
        title: String,
    },
    /// What a profile may play, and why not.
    Library {
        household: String,
        /// The household profile (pf-…).
        #[arg(long)]
        player: String,
    },
    /// Launch a title as a profile; prints the session: running with where to connect when a
    /// warm VM was ready, else queued with its place (or starting).
    Launch {
        household: String,
        /// The household profile (pf-…).
        #[arg(long)]
        player: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "par")]
        region: String,
    },
    /// Share-Play: join a friend's session with the code they gave you, as a profile; prints
    /// where to connect. Up to 60 minutes.
    Join {
        household: String,
        /// The code from the friend's invite (XXXX-XXXX).
        code: String,
        /// The household profile (pf-…).
        #[arg(long)]
        player: String,
    },
    /// Share-Play: leave the friend's session the profile plays along in.
    Leave {
        household: String,
        #[arg(long)]
        player: String,
    },
    /// Operators: grant a title to the household (or one profile).
    Grant {
        household: String,
        #[arg(long)]
        title: String,
        /// purchase, subscription, partner-licence or trial.
        #[arg(long, default_value = "purchase")]
        kind: String,
        /// One household profile (pf-…); absent: the whole household.
        #[arg(long)]
        player: Option<String>,
        /// RFC 3339 (a trial must end).
        #[arg(long)]
        ends_at: Option<String>,
    },
    /// Operators: revoke an entitlement.
    Revoke {
        household: String,
        entitlement: String,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The PIN from standard input, or VMCLOUD_PIN.
fn read_pin() -> anyhow::Result<String> {
    if let Ok(pin) = std::env::var("VMCLOUD_PIN") {
        return Ok(pin);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| anyhow!("cannot read the PIN from standard input: {e}"))?;
    let pin = line.trim().to_owned();
    if pin.is_empty() {
        return Err(anyhow!(
            "no PIN: give it on standard input, or in VMCLOUD_PIN"
        ));
    }
    Ok(pin)
}

fn print_household(h: &Value) {
    println!(
        "{} ({}) — plan {}: {} of {} min played this month, {} min left ({} carried over)",
        s(&h["name"]),
        s(&h["organisation"]),
        s(&h["plan"]),
        s(&h["hours"]["played_min"]),
        s(&h["hours"]["allowed_min"]),
        s(&h["hours"]["left_min"]),
        s(&h["hours"]["carried_over_min"]),
    );
    println!(
        "parental PIN: {}",
        match (h["pin_set"].as_bool(), h["pin_locked_until"].as_str()) {
            (_, Some(until)) => format!("locked until {until}"),
            (Some(true), None) => "set".to_owned(),
            _ => "not set".to_owned(),
        }
    );
    let rows: Vec<[String; 6]> = h["profiles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            [
                s(&p["id"]),
                s(&p["name"]),
                if p["kid"] == true { "kid" } else { "adult" }.to_owned(),
                format!("PEGI {}", s(&p["pegi_limit"])),
                p["daily_limit_min"]
                    .as_u64()
                    .map(|m| format!("{m} min/day"))
                    .unwrap_or_default(),
                format!("{} min today", s(&p["played_today_min"])),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print_rows(["PROFILE", "NAME", "", "PLAYS", "LIMIT", "TODAY"], &rows);
    }
}

pub async fn run(args: ClientArgs, command: HouseholdCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let call = |method: Method, path: String, body: Option<Value>| {
        let client = &client;
        async move {
            client
                .call(method, &path, body, false)
                .await
                .map(|v| v.unwrap_or(Value::Null))
        }
    };
    let v =
        match command {
            HouseholdCommand::Show { household } => {
                let h = call(Method::GET, format!("/v1/households/{household}"), None).await?;
                if !json_out {
                    print_household(&h);
                    return Ok(());
                }
                h
            }
            HouseholdCommand::AddProfile {
                household,
                name,
                kid,
                birth_year,
                daily_limit,
                hours,
                user,
            } => {
                let allowed = match hours {
                    None => None,
                    Some(h) => {
                        let (from, to) = h
                            .split_once('-')
                            .and_then(|(f, t)| {
                                Some((f.trim().parse::<u32>().ok()?, t.trim().parse::<u32>().ok()?))
                            })
                            .ok_or_else(|| anyhow!("--hours {h:?} is not FROM-TO (e.g. 14-19)"))?;
                        Some([from, to])
                    }
                };
                let p = call(
                    Method::POST,
                    format!("/v1/households/{household}/profiles"),
                    Some(json!({"name": name, "kid": kid, "birth_year": birth_year,
                    "daily_limit_min": daily_limit, "allowed_hours": allowed, "user": user})),
                )
                .await?;
                if !json_out {
                    println!("{}", s(&p["id"]));
                    return Ok(());
                }
                p
            }
            HouseholdCommand::RemoveProfile { household, profile } => {
                call(
                    Method::DELETE,
                    format!("/v1/households/{household}/profiles/{profile}"),
                    None,
                )
                .await?;
                eprintln!("profile {profile} removed");
                return Ok(());
            }
            HouseholdCommand::Pin {
                household,
                utc_offset,
            } => {
                let pin = read_pin()?;
                let h = call(
                    Method::PUT,
                    format!("/v1/households/{household}/pin"),
                    Some(json!({"pin": pin, "utc_offset_min": utc_offset})),
                )
                .await?;
                if !json_out {
                    println!("parental PIN set");
                    return Ok(());
                }
                h
            }
            HouseholdCommand::Unlock {
                household,
                player: profile,
                title,
            } => {
                let pin = read_pin()?;
                let u = call(
                    Method::POST,
                    format!("/v1/households/{household}/unlock"),
                    Some(json!({"profile": profile, "title": title, "pin": pin})),
                )
                .await?;
                if !json_out {
                    println!(
                        "{title} unlocked for {profile}'s next session (until {})",
                        s(&u["until"])
                    );
                    return Ok(());
                }
                u
            }
            HouseholdCommand::Library {
                household,
                player: profile,
            } => {
                let l = call(
                    Method::GET,
                    format!("/v1/households/{household}/library?profile={profile}"),
                    None,
                )
                .await?;
                if !json_out {
                    let rows: Vec<[String; 4]> = l["titles"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|t| {
                            [
                                s(&t["id"]),
                                format!("PEGI {}", s(&t["pegi"])),
                                if t["playable"] == true { "yes" } else { "no" }.to_owned(),
                                s(&t["why_not"]),
                            ]
                        })
                        .collect();
                    print_rows(["TITLE", "RATING", "PLAYABLE", "WHY NOT"], &rows);
                    return Ok(());
                }
                l
            }
            HouseholdCommand::Launch {
                household,
                player: profile,
                title,
                region,
            } => {
                let session = call(
                    Method::POST,
                    format!("/v1/households/{household}/launch"),
                    Some(json!({"profile": profile, "title": title, "region": region})),
                )
                .await?;
                if !json_out {
                    println!("{} {}", s(&session["id"]), s(&session["state"]));
                    crate::session_cmd::print_connection(&session["connection"]);
                    return Ok(());
                }
                session
            }
            HouseholdCommand::Join {
                household,
                code,
                player,
            } => {
                let g = call(
                    Method::POST,
                    format!("/v1/households/{household}/share-play"),
                    Some(json!({"code": code, "profile": player})),
                )
                .await?;
                if !json_out {
                    println!("{}", s(&g["session"]));
                    eprintln!(
                        "playing {} with {} until {}",
                        s(&g["title"]),
                        s(&g["host"]),
                        s(&g["until"])
                    );
                    crate::session_cmd::print_connection(&g["connection"]);
                    return Ok(());
                }
                g
            }
            HouseholdCommand::Leave { household, player } => {
                call(
                    Method::DELETE,
                    format!("/v1/households/{household}/share-play/{player}"),
                    None,
                )
                .await?;
                eprintln!("{player} left the friend's session");
                return Ok(());
            }
            HouseholdCommand::Grant {
                household,
                title,
                kind,
                player: profile,
                ends_at,
            } => call(
                Method::POST,
                format!("/v1/households/{household}/entitlements"),
                Some(json!({"title": title, "kind": kind, "profile": profile, "ends_at": ends_at})),
            )
            .await?,
            HouseholdCommand::Revoke {
                household,
                entitlement,
            } => {
                call(
                    Method::DELETE,
                    format!("/v1/households/{household}/entitlements/{entitlement}"),
                    None,
                )
                .await?;
                eprintln!("entitlement {entitlement} revoked");
                return Ok(());
            }
        };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `vmcloud titles`: the game catalog.
pub async fn titles(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let v = client
        .call(Method::GET, "/v1/titles", None, false)
        .await?
        .unwrap_or(Value::Null);
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<[String; 5]> = v["titles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            [
                s(&t["id"]),
                s(&t["name"]),
                format!("PEGI {}", s(&t["pegi"])),
                s(&t["gpu_class"]),
                if t["free_to_play"] == true {
                    "free to play".into()
                } else {
                    s(&t["publisher"])
                },
            ]
        })
        .collect();
    print_rows(["TITLE", "NAME", "RATING", "GPU", "PUBLISHER"], &rows);
    Ok(())
}

/// `vmcloud warm-pools`: each warm pool's size and what it served.
pub async fn warm_pools(args: ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let v = client
        .call(Method::GET, "/v1/warm-pools", None, false)
        .await?
        .unwrap_or(Value::Null);
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = v["pools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            [
                format!(
                    "{}/{}/{}",
                    s(&p["region"]),
                    s(&p["flavor"]),
                    p["pool"].as_str().unwrap_or("-")
                ),
                format!("{}..{}", s(&p["min"]), s(&p["max"])),
                s(&p["target"]),
                s(&p["ready"]),
                s(&p["booting"]),
                p["boot_ms"]
                    .as_i64()
                    .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
                format!(
                    "{} of {}",
                    s(&p["served_warm_last_hour"]),
                    s(&p["launches_last_hour"])
                ),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no warm pools: the catalog has no [[gaming.warm_pools]]");
        return Ok(());
    }
    print_rows(
        [
            "POOL",
            "MIN..MAX",
            "TARGET",
            "READY",
            "BOOTING",
            "BOOT",
            "WARM LAUNCHES (1 H)",
        ],
        &rows,
    );
    Ok(())
}
