//! Stripe's REST API, the parts billing uses: customers, cards (payment methods attached
//! through a SetupIntent), charges (PaymentIntents confirmed off-session), refunds — and the
//! `Stripe-Signature` check of its webhooks. Our own small client over `reqwest` (form-encoded
//! requests, `Idempotency-Key` on every POST so a retried charge is never taken twice); tested
//! against `localstripe`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Where Stripe is and the secret key (`sk_live_…`, `sk_test_…`).
#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a `localstripe`.
    pub api: String,
    pub secret_key: String,
    /// `whsec_…`: verifies the webhooks Stripe sends.
    pub webhook_secret: Option<String>,
    /// `pk_live_…`, `pk_test_…`: with it, the console's card form is Stripe's own (Stripe.js
    /// Elements and a SetupIntent confirmed in the browser: card numbers never reach us).
    pub publishable_key: Option<String>,
    /// Where Stripe.js is loaded from (`https://js.stripe.com/v3/`, or a localstripe's).
    pub js: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl StripeConfig {
    /// A test-mode key: cards may be given by number (Stripe's test cards).
    pub fn test_mode(&self) -> bool {
        self.secret_key.starts_with("sk_test_")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// The card was refused (`card_declined`, …): a dunning step, not an outage.
    #[error("the card was declined ({code}): {message}")]
    Declined { code: String, message: String },
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach Stripe at {api}: {why}")]
    Unreachable { api: String, why: String },
}

/// What a charge gave.
#[derive(Debug, Clone)]
pub struct Charge {
    pub payment_intent: String,
    pub status: String,
}

/// A saved card, as the console may show it.
#[derive(Debug, Clone)]
pub struct SavedCard {
    pub customer: String,
    pub payment_method: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

fn encode(pairs: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Clone)]
pub struct Stripe {
    config: StripeConfig,
    http: reqwest::Client,
}

impl Stripe {
    pub fn new(config: StripeConfig) -> Stripe {
        Stripe {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let url = format!("{}{path}", self.config.api.trim_end_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.config.secret_key)
            .header("Stripe-Version", "2024-06-20");
        if !form.is_empty() {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encode(form));
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let response = req.send().await.map_err(|e| StripeError::Unreachable {
            api: self.config.api.clone(),
            why: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let err = &body["error"];
        let code = err["code"].as_str().unwrap_or_default().to_owned();
        let message = err["message"].as_str().unwrap_or("no message").to_owned();
        if status == 402 || err["type"] == "card_error" {
            return Err(StripeError::Declined {
                code: if code.is_empty() {
                    "card_declined".into()
                } else {
                    code
                },
                message,
            });
        }
        Err(StripeError::Api { status, message })
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        self.request(reqwest::Method::POST, path, form, idempotency_key)
            .await
    }

    /// A customer for the organisation (one per organisation: the key makes a retry return
    /// the same one).
    pub async fn create_customer(&self, org: &str, name: &str) -> Result<String, StripeError> {
        let c = self
            .post(
                "/v1/customers",
                &[
                    ("name", name.to_owned()),
                    ("metadata[organisation]", org.to_owned()),
                ],
                Some(&format!("customer-{org}")),
            )
            .await?;
        Ok(c["id"].as_str().unwrap_or_default().to_owned())
    }

    /// A card payment method from a test card number (test mode only: live cards are
    /// entered in Stripe's own form and reach us as a `pm_…`).
    pub async fn test_card(
        &self,
        number: &str,
        exp_month: u32,
        exp_year: u32,
        cvc: &str,
    ) -> Result<String, StripeError> {
        let pm = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card".into()),
                    ("card[number]", number.to_owned()),
                    ("card[exp_month]", exp_month.to_string()),
                    ("card[exp_year]", exp_year.to_string()),
                    ("card[cvc]", cvc.to_owned()),
                ],
                None,
            )
            .await?;
        Ok(pm["id"].as_str().unwrap_or_default().to_owned())
    }

    /// A SetupIntent for the browser to confirm with Stripe.js (the card form): for
    /// off-session charges, tagged with the organisation. Returns (id, client secret).
    pub async fn setup_intent(
        &self,
        customer: &str,
        org: &str,
    ) -> Result<(String, String), StripeError> {
        let si = self
            .post(
                "/v1/setup_intents",
                &[
                    ("customer", customer.to_owned()),
                    ("usage", "off_session".into()),
                    ("metadata[organisation]", org.to_owned()),
                ],
                None,
            )
            .await?;
        Ok((
            si["id"].as_str().unwrap_or_default().to_owned(),
            si["client_secret"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// The card a SetupIntent confirmed in the browser saved, once it succeeded for
    /// `org`: attached to its customer for off-session charges, with what may be shown.
    pub async fn confirmed_card(
        &self,
        setup_intent: &str,
        org: &str,
    ) -> Result<SavedCard, StripeError> {
        let si = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/setup_intents/{setup_intent}"),
                &[],
                None,
            )
            .await?;
        if si["metadata"]["organisation"].as_str() != Some(org) {
            return Err(StripeError::Api {
                status: 404,
                message: format!("no setup intent {setup_intent} of organisation {org}"),
            });
        }
        let (Some(customer), Some(payment_method)) =
            (si["customer"].as_str(), si["payment_method"].as_str())
        else {
            return Err(StripeError::Declined {
                code: "setup_incomplete".into(),
                message: "the card form did not finish: enter the card again".into(),
            });
        };
        if si["status"] != "succeeded" {
            return Err(StripeError::Declined {
                code: si["status"].as_str().unwrap_or("setup_failed").to_owned(),
                message: "the card could not be saved for later payments".into(),
            });
        }
        // Stripe attaches it when the SetupIntent succeeds; attaching again is harmless (and
        // what a localstripe needs).
        self.post(
            &format!("/v1/payment_methods/{payment_method}/attach"),
            &[("customer", customer.to_owned())],
            Some(&format!("attach-{customer}-{payment_method}")),
        )
        .await?;
        self.card_details(customer, payment_method).await
    }

    async fn card_details(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<SavedCard, StripeError> {
        let pm = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/payment_methods/{payment_method}"),
                &[],
                None,
            )
            .await?;
        let card = &pm["card"];
        Ok(SavedCard {
            customer: customer.to_owned(),
            payment_method: payment_method.to_owned(),
            brand: card["brand"].as_str().unwrap_or("card").to_owned(),
            last4: card["last4"].as_str().unwrap_or_default().to_owned(),
            exp_month: card["exp_month"].as_u64().unwrap_or(0) as u32,
            exp_year: card["exp_year"].as_u64().unwrap_or(0) as u32,
        })
    }

    /// Saves `payment_method` for off-session charges (attached to the customer, a SetupIntent
    /// confirmed with it), then reads what may be shown of the card.
    pub async fn save_card(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<SavedCard, StripeError> {
        // Attached to the customer, then a SetupIntent confirmed with it: the card may be
        // charged later without the customer present.
        self.post(
            &format!("/v1/payment_methods/{payment_method}/attach"),
            &[("customer", customer.to_owned())],
            Some(&format!("attach-{customer}-{payment_method}")),
        )
        .await?;
        let created = self
            .post(
                "/v1/setup_intents",
                &[
                    ("customer", customer.to_owned()),
                    ("usage", "off_session".into()),
                ],
                Some(&format!("setup-{customer}-{payment_method}")),
            )
            .await?;
        let id = created["id"].as_str().unwrap_or_default();
        let si = self
            .post(
                &format!("/v1/setup_intents/{id}/confirm"),
                &[("payment_method", payment_method.to_owned())],
                Some(&format!("confirm-{id}")),
            )
            .await?;
        if si["status"] != "succeeded" {
            return Err(StripeError::Declined {
                code: si["status"].as_str().unwrap_or("setup_failed").to_owned(),
                message: "the card could not be saved for later payments".into(),
            });
        }
        self.card_details(customer, payment_method).await
    }

    /// Charges an invoice's amount due (in cents) to the saved card, off-session. `attempt`
    /// goes into the idempotency key: one charge per attempt, whatever is retried.
    pub async fn charge(
        &self,
        customer: &str,
        payment_method: &str,
        amount_cents: i64,
        currency: &str,
        invoice: &str,
        attempt: usize,
    ) -> Result<Charge, StripeError> {
        let pi = self
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", amount_cents.to_string()),
                    ("currency", currency.to_ascii_lowercase()),
                    ("customer", customer.to_owned()),
                    ("payment_method", payment_method.to_owned()),
                    ("off_session", "true".into()),
                    ("confirm", "true".into()),
                    ("metadata[invoice]", invoice.to_owned()),
                ],
                Some(&format!("charge-{invoice}-{attempt}")),
            )
            .await?;
        let status = pi["status"].as_str().unwrap_or_default().to_owned();
        if status == "requires_payment_method" {
            let err = &pi["last_payment_error"];
            return Err(StripeError::Declined {
                code: err["code"].as_str().unwrap_or("card_declined").to_owned(),
                message: err["message"]
                    .as_str()
                    .unwrap_or("the card was declined")
                    .to_owned(),
            });
        }
        Ok(Charge {
            payment_intent: pi["id"].as_str().unwrap_or_default().to_owned(),
            status,
        })
    }

    /// Refunds (part of) a charge: a credit note of a card-paid invoice.
    pub async fn refund(
        &self,
        payment_intent: &str,
        amount_cents: i64,
        credit_note: &str,
    ) -> Result<String, StripeError> {
        let r = self
            .post(
                "/v1/refunds",
                &[
                    ("payment_intent", payment_intent.to_owned()),
                    ("amount", amount_cents.to_string()),
                ],
                Some(&format!("refund-{credit_note}")),
            )
            .await?;
        Ok(r["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// How old a webhook's signature may be (Stripe's default tolerance).
pub const SIGNATURE_TOLERANCE_S: i64 = 300;

/// Checks a `Stripe-Signature` header (`t=…,v1=…[,v1=…]`) over `payload` with the endpoint's
/// secret, at `now_s` (this machine's real clock, not a test clock: the tolerance is about
/// replayed requests). The reason when it does not hold.
pub fn verify_signature(
    header: &str,
    payload: &[u8],
    secret: &str,
    now_s: i64,
) -> Result<(), String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s.to_owned()),
            _ => {}
        }
    }
    let t = timestamp.ok_or("the Stripe-Signature header has no timestamp (t=…)")?;
    if (now_s - t).abs() > SIGNATURE_TOLERANCE_S {
        return Err(format!(
            "the signature is {} s old; at most {SIGNATURE_TOLERANCE_S} s is accepted",
            now_s - t
        ));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let expected = mac.finalize().into_bytes();
    let ok = signatures.iter().any(|s| {
        let Some(bytes) = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        // Constant time.
        bytes.len() == expected.len()
            && bytes
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err("no v1 signature matches this endpoint's secret".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("t={t},v1={hex}")
    }

    #[test]
    fn signatures_are_checked_with_the_secret_and_a_300_s_tolerance() {
        let body = br#"{"type":"payment_intent.succeeded"}"#;
        let now = 1_800_000_000;
        let good = sign("whsec_a", now - 10, body);
        assert_eq!(verify_signature(&good, body, "whsec_a", now), Ok(()));
        // Another secret, another body, too old, no timestamp.
        assert!(verify_signature(&good, body, "whsec_b", now).is_err());
        assert!(verify_signature(&good, b"{}", "whsec_a", now).is_err());
        let old = sign("whsec_a", now - 301, body);
        assert!(
            verify_signature(&old, body, "whsec_a", now)
                .unwrap_err()
                .contains("300 s")
        );
        assert!(verify_signature("v1=00", body, "whsec_a", now).is_err());
        // Several v1 signatures (a secret being rolled): one matching is enough.
        let both = format!("{good},v1=deadbeef");
        assert_eq!(verify_signature(&both, body, "whsec_a", now), Ok(()));
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            encode(&[("metadata[invoice]", "inv 1&2".into())]),
            "metadata%5Binvoice%5D=inv%201%262"
        );
    }
}
