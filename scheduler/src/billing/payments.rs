//! Cards and dunning in `apply`: a saved card (which lifts the trial), failed charges and
//! their retries (after 1, 3 and 7 days from the first failure), then suspension — the
//! organisation's instances are stopped (not deleted) and it may create nothing — lifted as
//! soon as what was due is paid. The leader's [`crate::billing::collect`] proposes these.

use std::sync::Arc;

use vmcloud_proto::{OrgId, pb};

use crate::billing::types::{Card, InvoiceStatus, RETRY_DAYS, Suspension};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

const DAY_MS: i64 = 86_400_000;

impl ClusterState {
    pub(crate) fn set_payment_method(&mut self, c: pb::SetPaymentMethod, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.organisations.contains_key(&org) {
            return Err(Rejected::NotFound(format!("organisation {org}")));
        }
        if !c.payment_method.starts_with("pm_") || c.processor_customer.is_empty() {
            return Err(Rejected::Invalid(
                "a card is saved as the processor's customer and payment method (pm_…)".into(),
            ));
        }
        let account = self.billing.accounts.entry(org.clone()).or_default();
        account.processor_customer = Some(c.processor_customer);
        account.card = Some(Card {
            payment_method: c.payment_method,
            brand: c.brand,
            last4: c.last4,
            exp_month: c.exp_month,
            exp_year: c.exp_year,
            saved_at_ms: at,
        });
        if let Some(o) = self.organisations.get_mut(&org) {
            o.trial = false;
        }
        // Open invoices waiting for a way to pay are charged now.
        let ids: Vec<String> = self.billing.by_org.get(&org).cloned().unwrap_or_default();
        for id in ids {
            if let Some(inv) = self.billing.invoices.get_mut(&id).map(Arc::make_mut)
                && inv.status == InvoiceStatus::Open
                && !inv.self_billed
            {
                inv.next_attempt_ms = Some(at);
            }
        }
        Ok(Applied::Done)
    }

    pub(crate) fn record_payment_failure(
        &mut self,
        c: pb::RecordPaymentFailure,
        at: i64,
    ) -> ApplyResult {
        let inv = self
            .billing
            .invoices
            .get_mut(&c.invoice_id)
            .map(Arc::make_mut)
            .ok_or_else(|| Rejected::NotFound(format!("invoice {}", c.invoice_id)))?;
        if inv.status != InvoiceStatus::Open {
            return Err(Rejected::Conflict(format!(
                "invoice {} is {}, not open",
                inv.id,
                inv.status.as_str()
            )));
        }
        inv.failures.push((at, c.reason.clone()));
        let first = inv.failures[0].0;
        let n = inv.failures.len();
        inv.next_attempt_ms = RETRY_DAYS.get(n - 1).map(|d| first + d * DAY_MS);
        let (org, number, suspend) = (
            inv.org.clone(),
            inv.number.clone().unwrap_or_else(|| inv.id.clone()),
            n > RETRY_DAYS.len(),
        );
        let data = serde_json::json!({
            "invoice": inv.id, "number": number, "attempt": n, "reason": c.reason,
            "next_attempt": inv.next_attempt_ms.map(crate::clock::rfc3339),
        });
        self.emit_org_event(&org, "billing.payment_failed", data);
        if suspend {
            self.suspend(
                &org,
                Some(Suspension {
                    since_ms: at,
                    reason: format!(
                        "invoice {number} is unpaid after {n} attempts ({})",
                        c.reason
                    ),
                }),
            );
        }
        Ok(Applied::Done)
    }

    pub(crate) fn set_suspended(&mut self, c: pb::SetSuspended, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.organisations.contains_key(&org) {
            return Err(Rejected::NotFound(format!("organisation {org}")));
        }
        let reason = if c.reason.trim().is_empty() {
            "suspended by an operator".to_owned()
        } else {
            c.reason
        };
        self.suspend(
            &org,
            c.suspended.then_some(Suspension {
                since_ms: at,
                reason,
            }),
        );
        Ok(Applied::Done)
    }

    /// Suspends (or, with `None`, lifts the suspension of) an organisation: its instances'
    /// hosts get a new desired config (stopped, or running again).
    pub(crate) fn suspend(&mut self, org: &OrgId, suspension: Option<Suspension>) {
        let account = self.billing.accounts.entry(org.clone()).or_default();
        if account.suspended.is_some() == suspension.is_some() {
            return;
        }
        let event = if suspension.is_some() {
            "billing.suspended"
        } else {
            "billing.unsuspended"
        };
        let data = serde_json::json!({
            "organisation": org.to_string(),
            "reason": suspension.as_ref().map(|s| s.reason.clone()),
        });
        account.suspended = suspension;
        let projects = self.projects_of_org(org);
        let mut nodes = std::collections::BTreeSet::new();
        for p in &projects {
            for (_, id) in self.index.per_project.get(p).into_iter().flatten() {
                if let Some(n) = self.instances.get(id).and_then(|i| i.node.clone()) {
                    nodes.insert(n);
                }
            }
        }
        for n in nodes {
            if let Some(node) = self.nodes.get_mut(&n).map(Arc::make_mut) {
                node.generation += 1;
                self.generation_epoch.bump(&n);
            }
        }
        self.emit_org_event(org, event, data);
    }

    /// Lifts the organisation's suspension when nothing it owes is past its last retry.
    pub(crate) fn lift_if_settled(&mut self, org: &OrgId) {
        let owing = self
            .billing
            .by_org
            .get(org)
            .into_iter()
            .flatten()
            .filter_map(|id| self.billing.invoices.get(id))
            .any(|i| i.status == InvoiceStatus::Open && i.failures.len() > RETRY_DAYS.len());
        if !owing {
            self.suspend(org, None);
        }
    }

    /// Whether the organisation of `project` is suspended.
    pub fn suspended(&self, project: &vmcloud_proto::ProjectId) -> Option<&Suspension> {
        let org = &self.projects.get(project)?.org;
        self.billing.accounts.get(org)?.suspended.as_ref()
    }

    /// Refuses a new instance in a suspended organisation.
    pub(crate) fn check_suspended(
        &self,
        project: &vmcloud_proto::ProjectId,
    ) -> Result<(), Rejected> {
        match self.suspended(project) {
            None => Ok(()),
            Some(s) => Err(Rejected::Suspended(format!(
                "the organisation is suspended: {}; pay what is due (the console's billing page, or `vmcloud billing invoices`) to lift it at once",
                s.reason
            ))),
        }
    }

    pub(crate) fn set_budget_alerts(&mut self, c: pb::SetBudgetAlerts) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        if !self.organisations.contains_key(&org) {
            return Err(Rejected::NotFound(format!("organisation {org}")));
        }
        if c.thresholds.len() > 10 {
            return Err(Rejected::Invalid(format!(
                "{} budget alerts: set 10 at most",
                c.thresholds.len()
            )));
        }
        let mut thresholds = Vec::with_capacity(c.thresholds.len());
        for t in &c.thresholds {
            let d = crate::billing::types::positive_amount("budget alert", t)?;
            thresholds.push(d);
        }
        thresholds.sort();
        thresholds.dedup();
        self.billing
            .accounts
            .entry(org)
            .or_default()
            .budget_thresholds = thresholds;
        Ok(Applied::Done)
    }

    pub(crate) fn record_budget_alert(&mut self, c: pb::RecordBudgetAlert) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let threshold: rust_decimal::Decimal = c
            .threshold
            .parse()
            .map_err(|_| Rejected::Invalid(format!("threshold `{}`", c.threshold)))?;
        let account = self
            .billing
            .accounts
            .get_mut(&org)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org}")))?;
        if account
            .budget_alerts_sent
            .iter()
            .any(|(p, t)| *p == c.period && *t == threshold)
        {
            return Err(Rejected::Conflict(format!(
                "the {threshold} alert of {} was sent already",
                c.period
            )));
        }
        account.budget_alerts_sent.retain(|(p, _)| *p >= c.period);
        account
            .budget_alerts_sent
            .push((c.period.clone(), threshold));
        let data = serde_json::json!({
            "organisation": org.to_string(), "period": c.period,
            "threshold": c.threshold, "month_to_date": c.month_to_date,
        });
        self.emit_org_event(&org, "billing.budget_exceeded", data);
        Ok(Applied::Done)
    }

    /// A webhook event about billing, sent to each of the organisation's projects' endpoints.
    fn emit_org_event(&mut self, org: &OrgId, kind: &str, data: serde_json::Value) {
        for p in self.projects_of_org(org) {
            self.emit_webhook(&p, kind, data.clone());
        }
    }
}
