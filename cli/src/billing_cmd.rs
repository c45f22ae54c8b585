//! `vmcloud billing …`: what an organisation used and owes (usage, forecast, invoices,
//! credits), and what billing staff do (runs, previews, payments, voids and credit notes,
//! credits, the test clock of a dev cluster).

use anyhow::{Context, anyhow};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, Output, print_rows};

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Usage and its cost in a month (default: this month, to now).
    Usage {
        /// The organisation (default: yours, when you have one).
        #[arg(long)]
        org: Option<String>,
        /// `YYYY-MM`.
        #[arg(long)]
        period: Option<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// This month so far, where it is heading, and the credit left.
    Forecast {
        #[arg(long)]
        org: Option<String>,
    },
    /// Invoices and credit notes.
    Invoices {
        #[arg(long)]
        org: Option<String>,
        /// Only `draft`, `open`, `paid` or `void`.
        #[arg(long)]
        status: Option<String>,
    },
    /// One invoice with its lines.
    Invoice { id: String },
    /// Download an invoice as PDF (default file: invoice-<number>.pdf).
    Pdf {
        id: String,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Billing staff: the accounting journal (CSV) of the documents issued in a month.
    Journal {
        /// `YYYY-MM`.
        period: String,
        /// Default: standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The organisation's saved card; with --number, save a test card (test mode only: live
    /// cards are entered in the console's card form).
    Card {
        #[arg(long)]
        org: Option<String>,
        /// A Stripe test card number (4242424242424242 pays; 4000000000000002 is declined).
        #[arg(long)]
        number: Option<String>,
        /// MM/YY.
        #[arg(long, default_value = "12/34")]
        exp: String,
        #[arg(long, default_value = "123")]
        cvc: String,
    },
    /// Budget alerts: show them, or set them (--threshold, repeated; --clear for none).
    Budget {
        #[arg(long)]
        org: Option<String>,
        /// An amount of the month's cost (in the organisation's currency) to be told of.
        #[arg(long = "threshold")]
        thresholds: Vec<String>,
        #[arg(long, conflicts_with = "thresholds")]
        clear: bool,
    },
    /// Billing staff: make a coupon (`--percent 20` or `--amount 10.00 --currency EUR`).
    Coupon {
        code: String,
        #[arg(long, conflicts_with = "amount")]
        percent: Option<String>,
        #[arg(long)]
        amount: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// `once`, `repeating` (with --months) or `forever`.
        #[arg(long, default_value = "once")]
        duration: String,
        #[arg(long)]
        months: Option<u32>,
        #[arg(long)]
        max_redemptions: Option<u32>,
        /// RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Your prepaid balance and top-ups; with an amount, add to it: your saved card is
    /// charged now (billing staff record a bank transfer with --bank-transfer REFERENCE).
    /// Invoices are paid from the balance first.
    TopUp {
        /// In your organisation's currency, e.g. 50.00.
        amount: Option<String>,
        #[arg(long)]
        org: Option<String>,
        /// Billing staff: a bank transfer received, with the bank's reference.
        #[arg(long, value_name = "REFERENCE")]
        bank_transfer: Option<String>,
    },
    /// Your monthly plan and the plans on offer; with a plan id, take or change it (billed a
    /// month in advance; a change is prorated on the next invoice); --cancel ends it at the
    /// end of this month.
    Plan {
        plan: Option<String>,
        #[arg(long, conflicts_with = "plan")]
        cancel: bool,
        #[arg(long)]
        org: Option<String>,
    },
    /// A gaming household buys a pack of hours (e.g. pack-10h; `vmcloud billing plan` lists
    /// them): on this month's hours at once, billed once on the next invoice.
    HourPack {
        pack: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Billing staff: what customers owe, aged by days past due, most overdue first.
    Receivables {
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Redeem a coupon for your organisation.
    Redeem {
        code: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Credits and what is left of each.
    Credits {
        #[arg(long)]
        org: Option<String>,
    },
    /// Billing staff: bill a month that has ended (finalized, numbered, unless --draft).
    Run {
        /// `YYYY-MM`.
        period: String,
        /// Stop at drafts; `vmcloud billing finalize PERIOD` numbers them later.
        #[arg(long)]
        draft: bool,
        /// Days until the invoices are due (default 14).
        #[arg(long)]
        due_days: Option<u32>,
    },
    /// Billing staff: the invoices a run would make now, without making them.
    Preview {
        /// `YYYY-MM`.
        period: String,
    },
    /// Billing staff: number a run's drafts.
    Finalize { period: String },
    /// Operators: record a bank transfer received for an invoice (the whole amount due).
    Pay {
        id: String,
        /// The bank's reference.
        #[arg(long)]
        reference: String,
        #[arg(long)]
        amount: String,
    },
    /// Billing staff: void an open invoice, or issue a credit note for a paid one.
    Void {
        id: String,
        /// Printed on the credit note.
        #[arg(long)]
        reason: String,
    },
    /// Billing staff: grant an organisation credit.
    Credit {
        org: String,
        /// In the organisation's currency (e.g. 25.00).
        #[arg(long)]
        amount: String,
        #[arg(long)]
        description: String,
        /// `promotional` or `sla`.
        #[arg(long, default_value = "promotional")]
        kind: String,
        /// RFC 3339 (default: never).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Operators of a test cluster (`vmcloud dev`): move its clock forward, e.g. `31d`, `12h`.
    Clock { advance: String },
}

/// `31d`, `12h`, `90m`, `30s` → seconds.
fn duration_s(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow!("`{text}` is not a duration: write e.g. 31d, 12h, 90m or 30s"))?;
    let per = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => anyhow::bail!("`{text}` is not a duration: write e.g. 31d, 12h, 90m or 30s"),
    };
    Ok(n * per)
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_invoice(i: &Value) {
    println!(
        "{} {} — {} ({}), period {}",
        if i["kind"] == "credit-note" {
            "Credit note"
        } else {
            "Invoice"
        },
        i["number"].as_str().unwrap_or("(draft)"),
        s(&i["buyer"]["name"]),
        s(&i["organisation"]),
        s(&i["period"])
    );
    println!(
        "status {}, issued {}, due {}",
        s(&i["status"]),
        s(&i["issued_at"]),
        s(&i["due_at"])
    );
    let rows: Vec<[String; 3]> = i["lines"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|l| [s(&l["description"]), s(&l["quantity"]), s(&l["amount"])])
        .collect();
    print_rows(["LINE", "QUANTITY", "AMOUNT"], &rows);
    let t = &i["totals"];
    let c = s(&t["currency"]);
    println!("net {} {c}", s(&t["net"]));
    println!(
        "VAT {} % ({}): {} {c}",
        s(&t["vat_rate"]),
        s(&t["vat_scheme"]),
        s(&t["vat"])
    );
    println!(
        "total {} {c}, due {} {c}",
        s(&t["total"]),
        s(&t["amount_due"])
    );
    if let Some(m) = t["mention"].as_str() {
        println!("{m}");
    }
}

pub async fn run(args: ClientArgs, command: BillingCommand) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json_out = args.output == Output::Json;
    let answer = |v: Option<Value>| v.ok_or_else(|| anyhow!("the API returned nothing"));
    let get = |path: String| {
        let client = &client;
        async move { answer(client.call(Method::GET, &path, None, false).await?) }
    };
    let post = |path: String, body: Value| {
        let client = &client;
        async move { answer(client.call(Method::POST, &path, Some(body), false).await?) }
    };
    let v = match command {
        BillingCommand::Usage {
            org,
            period,
            project,
        } => {
            let r = get(format!(
                "/v1/usage{}",
                query(&[("org", &org), ("period", &period), ("project", &project)])
            ))
            .await?;
            if !json_out {
                let rows: Vec<[String; 6]> = r["rows"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|x| {
                        [
                            s(&x["resource"]),
                            s(&x["flavor"]),
                            s(&x["market"]),
                            s(&x["region"]),
                            format!("{:.2} h", x["seconds"].as_f64().unwrap_or(0.0) / 3600.0),
                            s(&x["amount"]),
                        ]
                    })
                    .collect();
                print_rows(
                    ["RESOURCE", "FLAVOR", "MARKET", "REGION", "TIME", "AMOUNT"],
                    &rows,
                );
                println!(
                    "total {} {} ({} to {}; before credits and VAT)",
                    s(&r["total"]),
                    s(&r["currency"]),
                    s(&r["from"]),
                    s(&r["to"])
                );
                return Ok(());
            }
            r
        }
        BillingCommand::Forecast { org } => {
            let r = get(format!("/v1/billing/forecast{}", query(&[("org", &org)]))).await?;
            if !json_out {
                let c = s(&r["currency"]);
                println!("{}: so far {} {c}", s(&r["period"]), s(&r["month_to_date"]));
                println!("forecast for the month {} {c}", s(&r["forecast"]));
                println!("credit left {} {c}", s(&r["credit_left"]));
                return Ok(());
            }
            r
        }
        BillingCommand::Invoices { org, status } => {
            let list = client
                .list_all(
                    &format!(
                        "/v1/invoices{}",
                        query(&[("org", &org), ("status", &status)])
                    ),
                    "invoices",
                )
                .await?;
            if !json_out {
                let rows: Vec<[String; 6]> = list["invoices"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|i| {
                        [
                            s(&i["id"]),
                            i["number"].as_str().unwrap_or("(draft)").to_owned(),
                            s(&i["period"]),
                            s(&i["status"]),
                            format!("{} {}", s(&i["total"]), s(&i["currency"])),
                            format!("{} {}", s(&i["amount_due"]), s(&i["currency"])),
                        ]
                    })
                    .collect();
                print_rows(["ID", "NUMBER", "PERIOD", "STATUS", "TOTAL", "DUE"], &rows);
                return Ok(());
            }
            list
        }
        BillingCommand::Invoice { id } => {
            let i = get(format!("/v1/invoices/{id}")).await?;
            if !json_out {
                print_invoice(&i);
                return Ok(());
            }
            i
        }
        BillingCommand::Pdf { id, out } => {
            let bytes = client.download(&format!("/v1/invoices/{id}/pdf")).await?;
            let out = match out {
                Some(o) => o,
                None => {
                    let i = get(format!("/v1/invoices/{id}")).await?;
                    let name = i["number"].as_str().unwrap_or(&id).to_owned();
                    std::path::PathBuf::from(format!("invoice-{name}.pdf"))
                }
            };
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
            return Ok(());
        }
        BillingCommand::Journal { period, out } => {
            let bytes = client
                .download(&format!("/v1/billing/journal?period={period}"))
                .await?;
            match out {
                Some(o) => {
                    std::fs::write(&o, &bytes)
                        .with_context(|| format!("cannot write {}", o.display()))?;
                    eprintln!("wrote {}", o.display());
                }
                None => print!("{}", String::from_utf8_lossy(&bytes)),
            }
            return Ok(());
        }
        BillingCommand::Card {
            org,
            number,
            exp,
            cvc,
        } => match number {
            None => {
                get(format!(
                    "/v1/billing/payment-method{}",
                    query(&[("org", &org)])
                ))
                .await?
            }
            Some(number) => {
                let (m, y) = exp
                    .split_once('/')
                    .and_then(|(m, y)| Some((m.parse::<u32>().ok()?, y.parse::<u32>().ok()?)))
                    .ok_or_else(|| anyhow!("--exp {exp:?} is not MM/YY (e.g. 12/34)"))?;
                let mut body = json!({"card": {"number": number, "exp_month": m,
                    "exp_year": if y < 100 { 2000 + y } else { y }, "cvc": cvc}});
                if let Some(o) = org {
                    body["org"] = o.into();
                }
                post("/v1/billing/payment-method".into(), body).await?
            }
        },
        BillingCommand::Budget {
            org,
            thresholds,
            clear,
        } => {
            if thresholds.is_empty() && !clear {
                get(format!(
                    "/v1/billing/budget-alerts{}",
                    query(&[("org", &org)])
                ))
                .await?
            } else {
                let mut body = json!({"thresholds": thresholds});
                if let Some(o) = org {
                    body["org"] = o.into();
                }
                answer(
                    client
                        .call(Method::PUT, "/v1/billing/budget-alerts", Some(body), false)
                        .await?,
                )?
            }
        }
        BillingCommand::Coupon {
            code,
            percent,
            amount,
            currency,
            duration,
            months,
            max_redemptions,
            expires_at,
        } => {
            post(
                "/v1/billing/coupons".into(),
                json!({"code": code, "percent_off": percent, "amount_off": amount,
                       "currency": currency, "duration": duration, "months": months,
                       "max_redemptions": max_redemptions, "expires_at": expires_at}),
            )
            .await?
        }
        BillingCommand::TopUp {
            amount,
            org,
            bank_transfer,
        } => {
            let r = match amount {
                None => get(format!("/v1/billing/top-ups{}", query(&[("org", &org)]))).await?,
                Some(amount) => {
                    let mut body = json!({"amount": amount});
                    if let Some(o) = org {
                        body["org"] = o.into();
                    }
                    if let Some(reference) = bank_transfer {
                        body["method"] = "bank-transfer".into();
                        body["reference"] = reference.into();
                    }
                    post("/v1/billing/top-ups".into(), body).await?
                }
            };
            if !json_out {
                println!(
                    "prepaid balance: {} {}",
                    s(&r["balance"]),
                    s(&r["currency"])
                );
                let rows: Vec<[String; 4]> = r["top_ups"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|t| ["at", "amount", "method", "reference"].map(|k| s(&t[k])))
                    .collect();
                if !rows.is_empty() {
                    print_rows(["AT", "AMOUNT", "METHOD", "REFERENCE"], &rows);
                }
                return Ok(());
            }
            r
        }
        BillingCommand::Plan { plan, cancel, org } => {
            let r = match (plan, cancel) {
                (Some(plan), _) => {
                    let mut body = json!({"plan": plan});
                    if let Some(o) = &org {
                        body["org"] = o.clone().into();
                    }
                    answer(
                        client
                            .call(Method::PUT, "/v1/billing/plan", Some(body), false)
                            .await?,
                    )?
                }
                (None, true) => answer(
                    client
                        .call(
                            Method::DELETE,
                            &format!("/v1/billing/plan{}", query(&[("org", &org)])),
                            None,
                            false,
                        )
                        .await?,
                )?,
                (None, false) => {
                    get(format!("/v1/billing/plan{}", query(&[("org", &org)]))).await?
                }
            };
            if !json_out {
                match r["current"].as_object() {
                    Some(c) => println!(
                        "plan: {} ({}), {} {} a month, since {}{}",
                        s(&c["name"]),
                        s(&c["plan"]),
                        s(&c["monthly"]),
                        s(&r["currency"]),
                        s(&r["since"]),
                        r["ends_at"]
                            .as_str()
                            .map(|t| format!(", ends at {t}"))
                            .unwrap_or_default()
                    ),
                    None => println!("no plan"),
                }
                let rows: Vec<[String; 3]> = r["available"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| ["plan", "name", "monthly"].map(|k| s(&p[k])))
                    .collect();
                print_rows(["PLAN", "NAME", "MONTHLY"], &rows);
                let packs: Vec<[String; 3]> = r["hour_packs"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| ["pack", "hours", "price"].map(|k| s(&p[k])))
                    .collect();
                if !packs.is_empty() {
                    println!();
                    print_rows(["HOUR PACK", "HOURS", "PRICE"], &packs);
                }
                return Ok(());
            }
            r
        }
        BillingCommand::HourPack { pack, org } => {
            let mut body = json!({"pack": pack});
            if let Some(o) = &org {
                body["org"] = o.clone().into();
            }
            let r = answer(
                client
                    .call(Method::POST, "/v1/billing/hour-packs", Some(body), false)
                    .await?,
            )?;
            if !json_out {
                println!(
                    "{}: {} h for {} {} (on the next invoice); {} min left this month",
                    s(&r["purchase"]),
                    s(&r["hours"]),
                    s(&r["price"]),
                    s(&r["currency"]),
                    s(&r["left_min"])
                );
                return Ok(());
            }
            r
        }
        BillingCommand::Receivables { limit } => {
            let limit = limit.map(|n| n.to_string());
            let r = get(format!(
                "/v1/billing/receivables{}",
                query(&[("limit", &limit)])
            ))
            .await?;
            if !json_out {
                let totals: Vec<[String; 7]> = r["totals"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(currency, a)| {
                                [
                                    currency.clone(),
                                    s(&a["not_due"]),
                                    s(&a["days_1_30"]),
                                    s(&a["days_31_60"]),
                                    s(&a["days_61_90"]),
                                    s(&a["over_90"]),
                                    s(&a["total"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if totals.is_empty() {
                    println!("nothing is owed");
                    return Ok(());
                }
                print_rows(
                    [
                        "CURRENCY", "NOT DUE", "1-30 D", "31-60 D", "61-90 D", "90+ D", "TOTAL",
                    ],
                    &totals,
                );
                println!();
                let rows: Vec<[String; 6]> = r["organisations"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|o| {
                        [
                            s(&o["organisation"]),
                            s(&o["name"]),
                            format!("{} {}", s(&o["amount_due"]), s(&o["currency"])),
                            s(&o["open_invoices"]),
                            s(&o["days_overdue"]),
                            if o["suspended"] == true {
                                "suspended".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                print_rows(
                    ["ORGANISATION", "NAME", "DUE", "INVOICES", "DAYS LATE", ""],
                    &rows,
                );
                if r["truncated"] == true {
                    println!("(more organisations owe: --limit up to 1000)");
                }
                return Ok(());
            }
            r
        }
        BillingCommand::Redeem { code, org } => {
            let mut body = json!({"code": code});
            if let Some(o) = org {
                body["org"] = o.into();
            }
            post("/v1/billing/redeem".into(), body).await?
        }
        BillingCommand::Credits { org } => {
            let r = get(format!("/v1/credits{}", query(&[("org", &org)]))).await?;
            if !json_out {
                let rows: Vec<[String; 5]> = r["credits"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|k| {
                        [
                            s(&k["id"]),
                            s(&k["kind"]),
                            format!(
                                "{} / {} {}",
                                s(&k["remaining"]),
                                s(&k["amount"]),
                                s(&k["currency"])
                            ),
                            s(&k["expires_at"]),
                            s(&k["description"]),
                        ]
                    })
                    .collect();
                print_rows(["ID", "KIND", "LEFT", "EXPIRES", "DESCRIPTION"], &rows);
                return Ok(());
            }
            r
        }
        BillingCommand::Run {
            period,
            draft,
            due_days,
        } => {
            let mut body = json!({"period": period, "draft": draft});
            if let Some(d) = due_days {
                body["due_days"] = d.into();
            }
            let r = post("/v1/billing/runs".into(), body).await?;
            if !json_out {
                let n = r["invoices"].as_array().map_or(0, Vec::len);
                eprintln!(
                    "period {period} billed: {n} {}{}",
                    if n == 1 { "invoice" } else { "invoices" },
                    if draft {
                        " (drafts: `vmcloud billing finalize` numbers them)"
                    } else {
                        ""
                    }
                );
                for (currency, total) in r["totals"].as_object().into_iter().flatten() {
                    eprintln!("  {} {currency}", s(total));
                }
                return Ok(());
            }
            r
        }
        BillingCommand::Preview { period } => {
            let r = get(format!("/v1/billing/preview?period={period}")).await?;
            if !json_out {
                let invoices = r["invoices"].as_array().cloned().unwrap_or_default();
                if invoices.is_empty() {
                    println!("no invoice: nothing was used in {period} that is not billed yet");
                }
                for i in &invoices {
                    print_invoice(i);
                    println!();
                }
                return Ok(());
            }
            r
        }
        BillingCommand::Finalize { period } => {
            post(format!("/v1/billing/runs/{period}/finalize"), json!({})).await?
        }
        BillingCommand::Pay {
            id,
            reference,
            amount,
        } => {
            post(
                format!("/v1/invoices/{id}/payments"),
                json!({"method": "bank-transfer", "reference": reference, "amount": amount}),
            )
            .await?
        }
        BillingCommand::Void { id, reason } => {
            post(format!("/v1/invoices/{id}/void"), json!({"reason": reason})).await?
        }
        BillingCommand::Credit {
            org,
            amount,
            description,
            kind,
            expires_at,
        } => {
            let mut body = json!({"amount": amount, "description": description, "kind": kind});
            if let Some(e) = expires_at {
                body["expires_at"] = e.into();
            }
            post(format!("/v1/organisations/{org}/credits"), body).await?
        }
        BillingCommand::Clock { advance } => {
            let r = post(
                "/v1/test-clock".into(),
                json!({"advance_s": duration_s(&advance)?}),
            )
            .await?;
            if !json_out {
                println!("the cluster's time is now {}", s(&r["now"]));
                return Ok(());
            }
            r
        }
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v.get("status").is_some() && v.get("lines").is_some() {
        print_invoice(&v);
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_say_what_is_wrong() {
        assert_eq!(super::duration_s("31d").unwrap(), 31 * 86_400);
        assert_eq!(super::duration_s("90m").unwrap(), 5_400);
        assert!(
            super::duration_s("a month")
                .unwrap_err()
                .to_string()
                .contains("31d")
        );
    }
}
