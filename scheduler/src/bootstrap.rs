//! First-start set-up of a development cluster: the dev account (an operator of its fleet)
//! and its API key.

use vmcloud_proto::AccountId;
use vmcloud_proto::pb::{self, command::Body};

use crate::accounts::api_key::ApiKeyToken;
use crate::raft_handle::Cluster;

/// The account `vmcloud dev` creates.
pub const DEV_ACCOUNT: &str = "acct-dev";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("could not commit the dev account")]
    Propose(#[from] vmcloud_consensus::ProposeError),
    #[error("the dev account was refused")]
    Rejected(#[from] crate::state::Rejected),
}

/// Makes sure the dev account exists and `existing` is one of its keys; if `existing` is
/// missing or no longer valid, creates a new key and returns it.
pub async fn ensure_dev_account(
    cluster: &Cluster,
    existing: Option<ApiKeyToken>,
) -> Result<ApiKeyToken, BootstrapError> {
    let account = AccountId::parse(DEV_ACCOUNT).expect("a valid account id");
    if let Some(token) = existing
        && cluster
            .state()
            .authenticate(&token.key_id, &token.secret_sha256())
            == Some(&account)
    {
        return Ok(token);
    }
    if !cluster.state().accounts.contains_key(&account) {
        cluster
            .propose(Body::CreateAccount(pb::CreateAccount {
                account_id: account.to_string(),
                name: "Development".into(),
                operator: true,
            }))
            .await??;
    }
    let token = ApiKeyToken::generate();
    cluster
        .propose(Body::AddApiKey(pb::AddApiKey {
            account_id: account.to_string(),
            key_id: token.key_id.clone(),
            secret_sha256: token.secret_sha256(),
        }))
        .await??;
    Ok(token)
}

/// Makes sure `token` is a key of the dev account, creating the account and the key when
/// missing. Idempotent, so every replica of a cluster may call it at start.
pub async fn ensure_api_key(cluster: &Cluster, token: &ApiKeyToken) -> Result<(), BootstrapError> {
    let account = AccountId::parse(DEV_ACCOUNT).expect("a valid account id");
    if cluster
        .state()
        .authenticate(&token.key_id, &token.secret_sha256())
        == Some(&account)
    {
        return Ok(());
    }
    let exists_is_fine =
        |r: Result<crate::state::ApplyResult, vmcloud_consensus::ProposeError>| match r {
            Ok(Ok(_)) | Ok(Err(crate::state::Rejected::Exists(_))) => Ok(()),
            Ok(Err(e)) => Err(BootstrapError::Rejected(e)),
            Err(e) => Err(BootstrapError::Propose(e)),
        };
    if !cluster.state().accounts.contains_key(&account) {
        exists_is_fine(
            cluster
                .propose(Body::CreateAccount(pb::CreateAccount {
                    account_id: account.to_string(),
                    name: "Development".into(),
                    operator: true,
                }))
                .await,
        )?;
    }
    exists_is_fine(
        cluster
            .propose(Body::AddApiKey(pb::AddApiKey {
                account_id: account.to_string(),
                key_id: token.key_id.clone(),
                secret_sha256: token.secret_sha256(),
            }))
            .await,
    )
}
