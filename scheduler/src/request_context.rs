//! The API request a command is proposed for: its id and its `Idempotency-Key`. The API's
//! request middleware ([`crate::api::request`]) runs every handler inside [`scope`];
//! [`crate::raft_handle::Cluster::propose_as`] stamps each command it proposes from there
//! with [`current`], so no handler has to pass the request along and none can forget it.
//! Commands the scheduler proposes on its own (controllers, agent reports) run outside any
//! request and carry none.

use std::sync::atomic::{AtomicU32, Ordering};

use vmcloud_proto::pb;

/// What the middleware learnt about one request.
#[derive(Debug)]
pub struct RequestScope {
    pub id: String,
    /// Empty when the client sent none.
    pub idempotency_key: String,
    /// SHA-256 over method, path and body (empty without a key).
    pub fingerprint: Vec<u8>,
    /// Commands proposed so far for this request.
    proposed: AtomicU32,
}

impl RequestScope {
    pub fn new(id: String, idempotency_key: String, fingerprint: Vec<u8>) -> RequestScope {
        RequestScope {
            id,
            idempotency_key,
            fingerprint,
            proposed: AtomicU32::new(0),
        }
    }
}

tokio::task_local! {
    static REQUEST: RequestScope;
}

/// Runs `f` as the handling of `request`.
pub async fn scope<F: std::future::Future>(request: RequestScope, f: F) -> F::Output {
    REQUEST.scope(request, f).await
}

/// The request the running task serves, as the next command it proposes carries it (each
/// command of a request gets the next `seq`); `None` outside a request.
pub fn current() -> Option<pb::Request> {
    REQUEST
        .try_with(|r| pb::Request {
            id: r.id.clone(),
            idempotency_key: r.idempotency_key.clone(),
            fingerprint: r.fingerprint.clone(),
            seq: r.proposed.fetch_add(1, Ordering::Relaxed),
        })
        .ok()
}

/// The id of the request the running task serves (empty outside a request).
pub fn current_id() -> String {
    REQUEST.try_with(|r| r.id.clone()).unwrap_or_default()
}
