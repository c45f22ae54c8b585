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
