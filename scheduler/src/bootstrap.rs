//! First-start set-up of a development cluster: the dev project (an operator of its fleet)
//! and its API key.

use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};

use crate::raft_handle::Cluster;
use crate::tenancy::api_key::ApiKeyToken;

/// The project `vmcloud dev` creates.
pub const DEV_PROJECT: &str = "acct-dev";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("could not commit the dev project")]
    Propose(#[from] vmcloud_consensus::ProposeError),
    #[error("the dev project was refused")]
    Rejected(#[from] crate::state::Rejected),
}

/// Makes sure the dev project exists and `existing` is one of its keys; if `existing` is
/// missing or no longer valid, creates a new key and returns it.
pub async fn ensure_dev_project(
    cluster: &Cluster,
    existing: Option<ApiKeyToken>,
) -> Result<ApiKeyToken, BootstrapError> {
    let project = ProjectId::parse(DEV_PROJECT).expect("a valid project id");
    if let Some(token) = existing
        && cluster
            .state()
            .authenticate(&token.key_id, &token.secret_sha256())
            == Some(&project)
    {
        return Ok(token);
    }
    if !cluster.state().projects.contains_key(&project) {
        cluster
            .propose(Body::CreateProject(pb::CreateProject {
                project_id: project.to_string(),
                name: "Development".into(),
                operator: true,
                ..Default::default()
            }))
            .await??;
    }
    let token = ApiKeyToken::generate();
    cluster
        .propose(Body::AddApiKey(pb::AddApiKey {
            project_id: project.to_string(),
            key_id: token.key_id.clone(),
            secret_sha256: token.secret_sha256(),
            name: "dev".into(),
            ..Default::default()
        }))
        .await??;
    Ok(token)
}

/// Makes sure `token` is a key of the dev project, creating the project and the key when
/// missing. Idempotent, so every replica of a cluster may call it at start.
pub async fn ensure_api_key(cluster: &Cluster, token: &ApiKeyToken) -> Result<(), BootstrapError> {
    let project = ProjectId::parse(DEV_PROJECT).expect("a valid project id");
    if cluster
        .state()
        .authenticate(&token.key_id, &token.secret_sha256())
        == Some(&project)
    {
        return Ok(());
    }
    let exists_is_fine =
        |r: Result<crate::state::ApplyResult, vmcloud_consensus::ProposeError>| match r {
            Ok(Ok(_)) | Ok(Err(crate::state::Rejected::Exists(_))) => Ok(()),
            Ok(Err(e)) => Err(BootstrapError::Rejected(e)),
            Err(e) => Err(BootstrapError::Propose(e)),
        };
    if !cluster.state().projects.contains_key(&project) {
        exists_is_fine(
            cluster
                .propose(Body::CreateProject(pb::CreateProject {
                    project_id: project.to_string(),
                    name: "Development".into(),
                    operator: true,
                    ..Default::default()
                }))
                .await,
        )?;
    }
    exists_is_fine(
        cluster
            .propose(Body::AddApiKey(pb::AddApiKey {
                project_id: project.to_string(),
                key_id: token.key_id.clone(),
                secret_sha256: token.secret_sha256(),
                name: "dev".into(),
                ..Default::default()
            }))
            .await,
    )
}

/// The demo customer `vmcloud dev` makes, so the console has someone to log in as at once.
pub const DEMO_EMAIL: &str = "demo@vmcloud.example";

/// Makes sure the demo customer exists (a verified user owning the "Demo" organisation with
/// its `default` project) with `password`. Does nothing when the email is taken.
pub async fn ensure_demo_customer(cluster: &Cluster, password: &str) -> Result<(), BootstrapError> {
    if cluster.state().users_by_email.contains_key(DEMO_EMAIL) {
        return Ok(());
    }
    let user = vmcloud_proto::UserId::generate();
    let (token, token_sha256) = crate::tenancy::api_key::mail_token();
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::tenancy::password::hash(&pw))
        .await
        .expect("hashing does not panic");
    cluster
        .propose(Body::SignUp(pb::SignUp {
            user_id: user.to_string(),
            email: DEMO_EMAIL.to_owned(),
            password_hash: hash,
            organisation: Some(pb::Organisation {
                org_id: vmcloud_proto::OrgId::generate().to_string(),
                name: "Demo".to_owned(),
                kind: "company".to_owned(),
                billing_country: "FR".to_owned(),
                vat_id: String::new(),
            }),
            project_id: ProjectId::generate().to_string(),
            verification_sha256: token_sha256,
            verification_expires_at_unix_ms: crate::clock::now_ms() + 3_600_000,
        }))
        .await??;
    cluster
        .propose(Body::VerifyEmail(pb::VerifyEmail {
            user_id: user.to_string(),
            token_sha256: crate::tenancy::api_key::mail_token_sha256(&token),
        }))
        .await??;
    Ok(())
}
