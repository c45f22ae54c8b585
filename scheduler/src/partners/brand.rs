//! A partner's brand as requests and mails see it: which partner a request's `Host` belongs
//! to, the base URL of its portal, the name and URL its customers' mails carry. The routes
//! ([`super::api`]) and the sign-up and invitation routes use these.

use axum::http::{HeaderMap, header};
use serde::Serialize;
use vmcloud_proto::OrgId;

use crate::api::context::ApiState;
use crate::partners::types::{Partner, VMCLOUD_ACCENT, VMCLOUD_PRIMARY};
use crate::state::ClusterState;

/// The host a request was sent to, without its port, lower case.
pub fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    Some(host.to_ascii_lowercase())
}

/// The partner whose portal the request came to.
pub fn host_partner(state: &ClusterState, headers: &HeaderMap) -> Option<Partner> {
    request_host(headers).and_then(|h| state.partner_by_domain(&h).cloned())
}

/// The base URL of a partner's portal: VMCloud's public URL with the partner's first domain
/// as host (scheme and port kept: `http://127.0.0.1:8080` → `http://edgenet.localhost:8080`).
pub fn partner_url(public_url: &str, partner: &Partner) -> String {
    let Some(domain) = partner.domains.first() else {
        return public_url.to_owned();
    };
    let (scheme, rest) = public_url
        .split_once("://")
        .unwrap_or(("https", public_url));
    let authority = rest.split('/').next().unwrap_or_default();
    let port = authority
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(_, p)| format!(":{p}"))
        .unwrap_or_default();
    format!("{scheme}://{domain}{port}")
}

/// The name and base URL mails about an organisation carry: its partner's, or VMCloud's.
pub fn mail_brand(s: &ApiState, org: Option<&OrgId>) -> (String, String) {
    let state = s.cluster.state();
    match org
        .and_then(|o| state.organisations.get(o))
        .and_then(|o| o.partner.as_ref())
        .and_then(|p| state.partners.get(p))
    {
        Some(p) => (p.display_name().to_owned(), partner_url(&s.public_url, p)),
        None => ("VMCloud".to_owned(), s.public_url.clone()),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BrandView {
    /// The partner's id; absent: VMCloud's own brand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    pub name: String,
    /// A `data:` URI, or empty.
    pub logo: String,
    pub primary_colour: String,
    pub accent_colour: String,
    pub support_email: String,
    pub support_url: String,
    pub legal: String,
}

impl BrandView {
    pub fn of(partner: Option<&Partner>) -> BrandView {
        match partner {
            Some(p) => BrandView {
                partner: Some(p.id.clone()),
                name: p.display_name().to_owned(),
                logo: p.brand.logo.clone(),
                primary_colour: or(&p.brand.primary_colour, VMCLOUD_PRIMARY),
                accent_colour: or(&p.brand.accent_colour, VMCLOUD_ACCENT),
                support_email: p.brand.support_email.clone(),
                support_url: p.brand.support_url.clone(),
                legal: p.brand.legal.clone(),
            },
            None => BrandView {
                partner: None,
                name: "VMCloud".into(),
                logo: String::new(),
                primary_colour: VMCLOUD_PRIMARY.into(),
                accent_colour: VMCLOUD_ACCENT.into(),
                support_email: String::new(),
                support_url: String::new(),
                legal: "VMCloud OÜ, Tallinn, Estonia".into(),
            },
        }
    }
}

fn or(s: &str, default: &str) -> String {
    if s.is_empty() { default } else { s }.to_owned()
}
