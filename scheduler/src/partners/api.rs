//! `/v1/partners`: operators make partners; a partner's staff see and change its brand and
//! domains, make and list its customers, and watch its POPs. `GET /v1/brand` (public) is the
//! brand of the request's host. `POST /v1/organisations/{id}/support-access` opens a
//! partner's customer to VMCloud's support for a while.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, ProjectId};

use crate::api::context::{ApiJson, ApiState, Operator, Who, created, rfc3339};
use crate::api::problem::Problem;
use crate::nodes::noc_api::{FleetQuery, HostRow, RaftSummary, RegionSummary, fleet_view};
use crate::partners::brand::{BrandView, host_partner};
use crate::partners::types::Partner;
use crate::state::ClusterState;
use crate::tenancy::authz::{Action, Principal, Resource};
use crate::tenancy::identity_api::OrganisationRequest;

/// `GET /v1/brand` (public): the brand of the host the request came to.
pub async fn brand(State(s): State<ApiState>, headers: HeaderMap) -> Json<BrandView> {
    let state = s.cluster.state();
    Json(BrandView::of(host_partner(&state, &headers).as_ref()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerView {
    pub id: String,
    pub name: String,
    pub brand: BrandView,
    pub domains: Vec<String>,
    /// The organisation of its staff (owners and admins: partner admins).
    pub staff_organisation: String,
    /// Its POPs: catalog regions whose sites it owns.
    pub pops: Vec<String>,
    pub customers: u32,
    pub created_at: String,
}

fn view(s: &ApiState, state: &ClusterState, p: &Partner) -> PartnerView {
    PartnerView {
        id: p.id.clone(),
        name: p.name.clone(),
        brand: BrandView::of(Some(p)),
        domains: p.domains.clone(),
        staff_organisation: p.staff_org.to_string(),
        pops: pops(s, &p.id),
        customers: state
            .organisations
            .values()
            .filter(|o| o.partner.as_deref() == Some(p.id.as_str()))
            .count() as u32,
        created_at: rfc3339(p.created_at_ms),
    }
}

fn pops(s: &ApiState, partner: &str) -> Vec<String> {
    s.catalog
        .regions
        .keys()
        .filter(|r| s.catalog.partner_of(r) == Some(partner))
        .cloned()
        .collect()
}

/// The partner `id`, or the answer that it does not exist.
pub(crate) fn find<'a>(state: &'a ClusterState, id: &str) -> Result<&'a Partner, Problem> {
    state
        .partners
        .get(id)
        .ok_or_else(|| Problem::not_found(format!("partner {id} does not exist")))
}

fn invalid(detail: String) -> Problem {
    Problem::unprocessable("invalid-partner", "Invalid partner", detail)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandRequest {
    #[serde(default)]
    pub display_name: String,
    /// `data:image/png;base64,…` or `data:image/svg+xml;base64,…`, 64 KiB at most.
    #[serde(default)]
    pub logo: String,
    /// `#rrggbb`.
    #[serde(default)]
    pub primary_colour: String,
    #[serde(default)]
    pub accent_colour: String,
    #[serde(default)]
    pub support_email: String,
    /// `https://…`.
    #[serde(default)]
    pub support_url: String,
    #[serde(default)]
    pub legal: String,
}

impl BrandRequest {
    fn to_pb(&self) -> pb::PartnerBrand {
        pb::PartnerBrand {
            display_name: self.display_name.clone(),
            logo: self.logo.clone(),
            primary_colour: self.primary_colour.clone(),
            accent_colour: self.accent_colour.clone(),
            support_email: self.support_email.clone(),
            support_url: self.support_url.clone(),
            legal: self.legal.clone(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartnerRequest {
    /// Lowercase letters, digits, `.` and `-`: as the catalog's `partner` of its POPs.
    pub id: String,
    pub name: String,
    /// ISO 3166-1 alpha-2 of the partner company.
    pub billing_country: String,
    /// The email of its first admin, who has an account already.
    pub admin_email: String,
    /// Host names its portal answers on.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub brand: BrandRequest,
}

/// `POST /v1/partners` (operators): a partner, its staff organisation and its first admin.
pub async fn create(
    State(s): State<ApiState>,
    Operator(operator): Operator,
    ApiJson(req): ApiJson<CreatePartnerRequest>,
) -> Result<Response, Problem> {
    let email = crate::tenancy::validate::email(&req.admin_email)
        .map_err(|e| invalid(format!("admin_email: {e}")))?;
    let owner = s
        .cluster
        .state()
        .users_by_email
        .get(&email)
        .cloned()
        .ok_or_else(|| {
            invalid(format!(
                "no account for {email}: the partner's first admin signs up first (any portal), then make the partner"
            ))
        })?;
    s.cluster
        .propose_as(
            operator.actor(),
            Body::CreatePartner(pb::CreatePartner {
                partner_id: req.id.clone(),
                name: req.name,
                staff_org_id: OrgId::generate().to_string(),
                staff_project_id: ProjectId::generate().to_string(),
                owner_user_id: owner.to_string(),
                billing_country: req.billing_country,
                brand: Some(req.brand.to_pb()),
                domains: req.domains,
                pops: pops(&s, &req.id),
            }),
        )
        .await??;
    let state = s.cluster.state();
    let p = state
        .partners
        .get(&req.id)
        .ok_or_else(|| Problem::not_found("the partner was not kept"))?;
    Ok(created(
        format!("/v1/partners/{}", p.id),
        view(&s, &state, p),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerList {
    pub partners: Vec<PartnerView>,
}

/// `GET /v1/partners`: every partner for VMCloud's staff; the caller's own for a partner's.
pub async fn list(State(s): State<ApiState>, who: Who) -> Result<Json<PartnerList>, Problem> {
    let state = s.cluster.state();
    if matches!(who.principal, Principal::Anonymous) {
        return Err(Problem::unauthorized("log in or send an API key"));
    }
    Ok(Json(PartnerList {
        partners: state
            .partners
            .values()
            .filter(|p| {
                state
                    .authorize(
                        &who.principal,
                        Action::ReadPartner,
                        Resource::Partner(&p.id),
                    )
                    .is_ok()
            })
            .map(|p| view(&s, &state, p))
            .collect(),
    }))
}

/// `GET /v1/partners/{id}`.
pub async fn get(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<Json<PartnerView>, Problem> {
    who.may(&s, Action::ReadPartner, Resource::Partner(&id))?;
    let state = s.cluster.state();
    let p = find(&state, &id)?;
    Ok(Json(view(&s, &state, p)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePartnerRequest {
    /// Replaces the brand.
    #[serde(default)]
    pub brand: Option<BrandRequest>,
    /// Replaces the domains.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
}

/// `PATCH /v1/partners/{id}` (its admins, VMCloud's operators): brand and domains.
pub async fn update(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdatePartnerRequest>,
) -> Result<Json<PartnerView>, Problem> {
    who.may(&s, Action::ManagePartner, Resource::Partner(&id))?;
    s.cluster
        .propose_as(
            who.actor(),
            Body::UpdatePartner(pb::UpdatePartner {
                partner_id: id.clone(),
                brand: req.brand.as_ref().map(BrandRequest::to_pb),
                set_domains: req.domains.is_some(),
                domains: req.domains.unwrap_or_default(),
                ..Default::default()
            }),
        )
        .await??;
    let state = s.cluster.state();
    let p = find(&state, &id)?;
    Ok(Json(view(&s, &state, p)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub billing_country: String,
    pub members: u32,
    /// Invitations not taken yet (the owner's, for a customer the partner made).
    pub invited: Vec<String>,
    pub created_at: String,
    /// Until when VMCloud's support may see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_access_until: Option<String>,
}

impl CustomerRow {
    fn of(o: &crate::tenancy::types::Organisation, now_ms: i64) -> CustomerRow {
        CustomerRow {
            id: o.id.to_string(),
            name: o.name.clone(),
            kind: o.kind.as_str(),
            billing_country: o.billing_country.clone(),
            members: o.members.len() as u32,
            invited: o.invitations.keys().cloned().collect(),
            created_at: rfc3339(o.created_at_ms),
            support_access_until: o
                .support_access_until_ms
                .filter(|t| *t > now_ms)
                .map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerList {
    /// Every customer of the partner, counted.
    pub total: u32,
    pub by_kind: BTreeMap<String, u32>,
    /// Those the caller may see: all of them for the partner's staff; for VMCloud's staff,
    /// only those with support access open ("my customer's customer is not my customer").
    pub customers: Vec<CustomerRow>,
}

/// `GET /v1/partners/{id}/customers`.
pub async fn customers(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<Json<CustomerList>, Problem> {
    who.may(&s, Action::ReadPartner, Resource::Partner(&id))?;
    let state = s.cluster.state();
    let mut list = CustomerList {
        total: 0,
        by_kind: BTreeMap::new(),
        customers: Vec::new(),
    };
    for o in state
        .organisations
        .values()
        .filter(|o| o.partner.as_deref() == Some(id.as_str()))
    {
        list.total += 1;
        *list.by_kind.entry(o.kind.as_str().to_owned()).or_default() += 1;
        if state
            .authorize(&who.principal, Action::ReadOrg, Resource::Org(&o.id))
            .is_ok()
        {
            list.customers.push(CustomerRow::of(o, state.now_ms));
        }
    }
    list.customers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(list))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerRequest {
    #[serde(flatten)]
    pub organisation: OrganisationRequest,
    /// Its owner, invited by mail (with the partner's name and a link to its portal).
    pub owner_email: String,
}

/// `POST /v1/partners/{id}/customers` (the partner's admins): a customer organisation with
/// its `default` project, and its owner invited.
pub async fn create_customer(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateCustomerRequest>,
) -> Result<Response, Problem> {
    who.may(&s, Action::ManagePartner, Resource::Partner(&id))?;
    if !s.cluster.state().is_partner_staff(&who.principal, &id) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "a partner's customers are made by its own admins (partner {id}), who invite their owners"
            ),
        ));
    }
    let email = crate::tenancy::validate::email(&req.owner_email).map_err(|e| {
        Problem::unprocessable(
            "invalid-email",
            "Invalid email",
            format!("owner_email: {e}"),
        )
    })?;
    let organisation = req.organisation.validated()?;
    let org_id = OrgId::parse(&organisation.org_id).expect("a generated id");
    s.cluster
        .propose_as(
            who.actor(),
            Body::CreateOrganisation(pb::CreateOrganisation {
                organisation: Some(organisation),
                owner_user_id: String::new(),
                project_id: ProjectId::generate().to_string(),
                provider: false,
                partner_id: id.clone(),
            }),
        )
        .await??;
    let _invited = crate::tenancy::invitations_api::invite(
        &s,
        &who,
        &org_id,
        &email,
        crate::tenancy::types::Role::Owner,
    )
    .await?;
    let state = s.cluster.state();
    let o = state
        .organisations
        .get(&org_id)
        .ok_or_else(|| Problem::not_found("the organisation was not kept"))?;
    Ok(created(
        format!("/v1/organisations/{org_id}"),
        CustomerRow::of(o, state.now_ms),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PopView {
    /// Its POP regions, each as the NOC sees a datacenter.
    pub regions: Vec<RegionSummary>,
    /// Its hosts (the first 200), by region then name.
    pub hosts: Vec<HostRow>,
    /// Game sessions running on its hosts.
    pub sessions: u32,
}

/// `GET /v1/partners/{id}/pop`: the health of the partner's POPs (hosts by state, GPUs,
/// waiting work, a silent site) — none of VMCloud's datacenters or another partner's POPs.
pub async fn pop(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<Json<PopView>, Problem> {
    who.may(&s, Action::ReadPartner, Resource::Partner(&id))?;
    let regions = pops(&s, &id);
    let state = s.cluster.state();
    let verdict = s.liveness.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = crate::clock::now_ms().max(state.now_ms);
    let mut out = PopView {
        regions: Vec::new(),
        hosts: Vec::new(),
        sessions: 0,
    };
    for region in &regions {
        let v = fleet_view(
            &state,
            &FleetQuery {
                region: Some(region.clone()),
                ..FleetQuery::default()
            },
            &verdict,
            RaftSummary {
                term: 0,
                leader: 0,
                voters: Vec::new(),
                commit_index: 0,
                lagging: Vec::new(),
            },
            now,
        );
        out.regions
            .extend(v.regions.into_iter().filter(|r| &r.region == region));
        out.hosts.extend(v.hosts);
    }
    out.sessions = state
        .instances
        .values()
        .filter(|i| i.session.is_some() && !i.is_warm() && regions.contains(&i.region))
        .filter(|i| i.node.is_some())
        .count() as u32;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportAccessRequest {
    /// How long VMCloud's support may see the organisation (1 to 720); 0 closes it.
    pub hours: u32,
}

/// `POST /v1/organisations/{id}/support-access` (its owners and admins, or its partner's
/// admins): lets VMCloud's support see a partner's customer for a while, audited.
pub async fn support_access(
    State(s): State<ApiState>,
    who: Who,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SupportAccessRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    let org = OrgId::parse(&id)
        .map_err(|_| Problem::not_found(format!("organisation `{id}` does not exist")))?;
    who.may(&s, Action::ManageOrg, Resource::Org(&org))?;
    if req.hours > 720 {
        return Err(Problem::unprocessable(
            "invalid-support-access",
            "Invalid support access",
            format!(
                "{} hours is too long: open access for 1 to 720 hours (30 days), or 0 to close it",
                req.hours
            ),
        ));
    }
    let now = crate::clock::now_ms().max(s.cluster.state().now_ms);
    let until = if req.hours == 0 {
        0
    } else {
        now + i64::from(req.hours) * 3_600_000
    };
    s.cluster
        .propose_as(
            who.actor(),
            Body::GrantSupportAccess(pb::GrantSupportAccess {
                org_id: org.to_string(),
                until_unix_ms: until,
            }),
        )
        .await??;
    Ok(Json(serde_json::json!({
        "organisation": org.to_string(),
        "support_access_until": (until != 0).then(|| rfc3339(until)),
    })))
}
