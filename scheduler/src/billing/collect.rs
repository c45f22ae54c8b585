//! The leader collects what is due: an open invoice whose attempt is due is charged to the
//! organisation's saved card (Stripe), or — without a card — counted as a reminder; each
//! failure is a command (`RecordPaymentFailure`) whose dunning step `apply` decides (retry
//! after 1, 3 and 7 days, then suspension), and the organisation's owners get a mail for each
//! step. An organisation suspended longer than the grace (`--dunning-grace`, 30 days) has its
//! instances deleted. A charge that does not reach Stripe is tried again on the next round,
//! under the same idempotency key: never two charges for one attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use vmcloud_proto::pb::{self, command::Body};

use crate::billing::stripe::{Stripe, StripeError};
use crate::billing::types::{Invoice, InvoiceStatus, RETRY_DAYS};
use crate::clock::{now_ms, rfc3339};
use crate::raft_handle::Cluster;
use crate::state::ClusterState;

/// Where the collector works.
#[derive(Clone)]
pub struct Collector {
    pub cluster: Cluster,
    pub stripe: Option<Stripe>,
    pub mailer: Arc<crate::mail::Mailer>,
    /// How long a suspended organisation keeps its instances.
    pub grace: Duration,
}

pub(crate) fn cents(d: Decimal) -> i64 {
    (d * Decimal::ONE_HUNDRED)
        .round()
        .to_string()
        .parse()
        .unwrap_or(0)
}

/// The owners' (and billing members') emails of an organisation.
fn billing_contacts(state: &ClusterState, org: &vmcloud_proto::OrgId) -> Vec<String> {
    use crate::tenancy::types::Role;
    state
        .organisations
        .get(org)
        .map(|o| {
            o.members
                .iter()
                .filter(|(_, r)| matches!(r, Role::Owner | Role::Billing))
                .filter_map(|(u, _)| state.users.get(u).map(|u| u.email.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// How often the leader compares the month's cost with the budget alerts.
pub const BUDGET_CHECK_EVERY: Duration = Duration::from_secs(5);

impl Collector {
    /// Budget alerts: each threshold the month's cost so far has crossed, once a month.
    async fn budgets(&self) {
        let now = now_ms();
        let period = crate::billing::types::period_of(now);
        let state = self.cluster.state();
        for (org, account) in state.billing.accounts.iter() {
            if account.budget_thresholds.is_empty() {
                continue;
            }
            let Ok((report, _, _)) =
                crate::billing::api::usage_report(&state, org, &period, None, now, Vec::new())
            else {
                continue;
            };
            for t in &account.budget_thresholds {
                if report.total < *t
                    || account
                        .budget_alerts_sent
                        .iter()
                        .any(|(p, s)| *p == period && s == t)
                {
                    continue;
                }
                let command = Body::RecordBudgetAlert(pb::RecordBudgetAlert {
                    org_id: org.to_string(),
                    period: period.clone(),
                    threshold: t.to_string(),
                    month_to_date: report.total.to_string(),
                });
                if !matches!(self.cluster.propose(command).await, Ok(Ok(_))) {
                    continue;
                }
                let subject = format!("Budget alert: {t} {} reached", report.currency);
                let body = format!(
                    "This month's cost so far ({period}) is {} {}, past your alert at {t} {}. See the console's billing page for what it is made of.",
                    report.total, report.currency, report.currency
                );
                for to in billing_contacts(&state, org) {
                    if let Err(e) = self.mailer.send(&to, &subject, &body).await {
                        tracing::warn!(%to, error = %e, "budget mail not sent");
                    }
                }
            }
        }
    }

    pub async fn run(self) {
        let mut status = self.cluster.raft_status();
        // Credit notes refunded by this leader (Stripe's idempotency key guards the rest).
        let mut refunded: BTreeSet<String> = BTreeSet::new();
        // Charges that did not reach Stripe: not before this time again.
        let mut backoff: BTreeMap<String, i64> = BTreeMap::new();
        let mut budgets_checked = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            if status.borrow_and_update().is_leader {
                self.round(&mut refunded, &mut backoff).await;
                if budgets_checked.elapsed() >= BUDGET_CHECK_EVERY {
                    budgets_checked = std::time::Instant::now();
                    self.budgets().await;
                }
            }
            crate::raft_handle::lead_changes(&mut status, Duration::from_secs(2)).await;
        }
    }

    async fn round(&self, refunded: &mut BTreeSet<String>, backoff: &mut BTreeMap<String, i64>) {
        let now = now_ms();
        let state = self.cluster.state();
        let due: Vec<Arc<Invoice>> = state
            .billing
            .invoices
            .values()
            .filter(|i| {
                i.status == InvoiceStatus::Open
                    && i.next_attempt_ms.is_some_and(|t| t <= now)
                    && backoff.get(&i.id).is_none_or(|b| *b <= now)
            })
            .cloned()
            .collect();
        for inv in due {
            self.attempt(&state, &inv, backoff).await;
        }
        // Suspended past the grace: the instances go.
        let grace = self.grace.as_millis() as i64;
        for (org, account) in state.billing.accounts.iter() {
            let Some(s) = &account.suspended else {
                continue;
            };
            if now < s.since_ms + grace {
                continue;
            }
            for project in state.projects_of_org(org) {
                for (_, id) in state.index.per_project.get(&project).into_iter().flatten() {
                    let Some(i) = state.instances.get(id) else {
                        continue;
                    };
                    if i.state == crate::instances::types::InstanceState::Deleting {
                        continue;
                    }
                    tracing::warn!(%org, instance = %i.id, "deleting: suspended past the grace");
                    let _ = self
                        .cluster
                        .propose(Body::DeleteInstance(pb::DeleteInstance {
                            instance_id: i.id.to_string(),
                            project_id: project.to_string(),
                        }))
                        .await;
                }
            }
        }
        // Credit notes of invoices paid by card: refunded.
        if let Some(stripe) = &self.stripe {
            for note in state.billing.invoices.values() {
                let Some(of) = note
                    .corrects
                    .as_ref()
                    .and_then(|o| state.billing.invoices.get(o))
                else {
                    continue;
                };
                let Some(card) = of.payments.iter().find(|p| p.method == "card") else {
                    continue;
                };
                if refunded.contains(&note.id) {
                    continue;
                }
                match stripe
                    // What the card paid: the prepaid balance's part went back to the balance.
                    .refund(&card.reference, cents(-note.totals.amount_due), &note.id)
                    .await
                {
                    Ok(r) => {
                        tracing::info!(note = %note.id, refund = %r, "refunded");
                        refunded.insert(note.id.clone());
                    }
                    Err(e) => tracing::warn!(note = %note.id, error = %e, "refund failed"),
                }
            }
        }
    }

    async fn attempt(
        &self,
        state: &ClusterState,
        inv: &Invoice,
        backoff: &mut BTreeMap<String, i64>,
    ) {
        let number = inv.number.clone().unwrap_or_else(|| inv.id.clone());
        let account = state.billing.accounts.get(&inv.org);
        let card = account.and_then(|a| a.card.as_ref().zip(a.processor_customer.as_ref()));
        let outcome = match (&self.stripe, card) {
            (Some(stripe), Some((card, customer))) => stripe
                .charge(
                    customer,
                    &card.payment_method,
                    cents(inv.totals.amount_due),
                    inv.totals.currency.code(),
                    &inv.id,
                    inv.failures.len(),
                )
                .await
                .map(|c| c.payment_intent),
            (None, Some(_)) => Err(StripeError::Unreachable {
                api: "(none)".into(),
                why: "no Stripe endpoint is configured on the leader".into(),
            }),
            (_, None) => Err(StripeError::Declined {
                code: "no_payment_method".into(),
                message: "no card is saved: pay by bank transfer, or save a card".into(),
            }),
        };
        let command = match outcome {
            Ok(payment_intent) => Body::RecordPayment(pb::RecordPayment {
                invoice_id: inv.id.clone(),
                method: "card".into(),
                reference: payment_intent,
                amount: inv.totals.amount_due.to_string(),
            }),
            Err(StripeError::Declined { code, message }) => {
                Body::RecordPaymentFailure(pb::RecordPaymentFailure {
                    invoice_id: inv.id.clone(),
                    reason: format!("{code}: {message}"),
                })
            }
            Err(e) => {
                tracing::warn!(invoice = %inv.id, error = %e, "charge not made; trying again in a minute");
                backoff.insert(inv.id.clone(), now_ms() + 60_000);
                return;
            }
        };
        let failed = matches!(command, Body::RecordPaymentFailure(_));
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(invoice = %inv.id, error = %e, "payment outcome refused");
                return;
            }
            Err(e) => {
                tracing::warn!(invoice = %inv.id, error = %e, "could not propose the payment outcome");
                return;
            }
        }
        // Tell the people who pay.
        let after = self.cluster.state();
        let Some(now_inv) = after.billing.invoices.get(&inv.id) else {
            return;
        };
        let (subject, body) = if !failed {
            (
                format!("Invoice {number} paid"),
                format!(
                    "Your card paid invoice {number}: {} {}. Thank you.",
                    inv.totals.amount_due,
                    inv.totals.currency.code()
                ),
            )
        } else if now_inv.failures.len() > RETRY_DAYS.len() {
            (
                format!("Account suspended: invoice {number} is unpaid"),
                format!(
                    "Invoice {number} ({} {}) is still unpaid after {} attempts ({}). Your instances are stopped, not deleted, and no new ones can be created. Pay the invoice and everything starts again at once; without payment, instances are deleted after {} days.",
                    inv.totals.amount_due,
                    inv.totals.currency.code(),
                    now_inv.failures.len(),
                    now_inv
                        .failures
                        .last()
                        .map(|f| f.1.as_str())
                        .unwrap_or_default(),
                    self.grace.as_secs() / 86_400
                ),
            )
        } else {
            (
                format!("Payment failed for invoice {number}"),
                format!(
                    "We could not collect {} {} for invoice {number} ({}). Next attempt: {}. Update your card or pay by bank transfer to avoid a suspension.",
                    inv.totals.amount_due,
                    inv.totals.currency.code(),
                    now_inv
                        .failures
                        .last()
                        .map(|f| f.1.as_str())
                        .unwrap_or_default(),
                    now_inv.next_attempt_ms.map(rfc3339).unwrap_or_default()
                ),
            )
        };
        for to in billing_contacts(&after, &inv.org) {
            if let Err(e) = self.mailer.send(&to, &subject, &body).await {
                tracing::warn!(%to, error = %e, "billing mail not sent");
            }
        }
    }
}
