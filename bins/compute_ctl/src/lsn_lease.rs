//! When a Static compute keeps its LSN lease: from the moment its spec is known (before the
//! start, as upstream) until a termination request or the end of supervision, renewing through
//! `neon_clients::keep_lease`. The pageserver connection info and token follow the spec in
//! effect: a `/configure` that changes them renews the lease at once on the new pageservers.
//! The tenant, timeline and LSN are those of the spec the compute started with (a running
//! compute cannot move to another LSN).

use std::sync::Arc;

use compute_spec::{ComputeMode, ValidatedSpec};
use neon_clients::{LeaseConfig, LeaseEnd, LeaseRequest, LeaseTarget};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::state::Compute;

/// A running lease task.
pub(crate) struct LeaseTask {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseTask {
    /// Stops the renewals and waits for the task.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// What to lease for `spec`: `None` unless it is a Static compute with a pageserver, a tenant
/// and a timeline.
fn lease_of(spec: &ValidatedSpec) -> Option<(LeaseRequest, LeaseTarget)> {
    let ComputeMode::Static(lsn) = spec.spec().mode else {
        return None;
    };
    let storage = spec.storage();
    let request = LeaseRequest {
        tenant_id: storage.tenant_id?,
        timeline_id: storage.timeline_id?,
        lsn,
    };
    Some((request, target_of(spec)?))
}

fn target_of(spec: &ValidatedSpec) -> Option<LeaseTarget> {
    Some(LeaseTarget {
        pageserver: spec.storage().pageserver.clone()?,
        auth_token: spec.spec().storage_auth_token.clone(),
    })
}

/// Starts keeping the lease of a Static compute; `None` for any other spec. The task ends on
/// [`LeaseTask::stop`], on a termination request, or when a pageserver refuses the lease.
pub(crate) fn spawn(compute: Arc<Compute>, spec: &ValidatedSpec) -> Option<LeaseTask> {
    let (request, target) = lease_of(spec)?;
    let cancel = CancellationToken::new();
    let span = tracing::info_span!(
        "lsn_lease",
        tenant = %request.tenant_id,
        timeline = %request.timeline_id,
        lsn = %request.lsn,
    );
    let task = tokio::spawn(run(compute, request, target, cancel.clone()).instrument(span));
    Some(LeaseTask { cancel, task })
}

async fn run(
    compute: Arc<Compute>,
    request: LeaseRequest,
    target: LeaseTarget,
    cancel: CancellationToken,
) {
    tracing::info!("keeping the lsn lease of this static compute");
    let (target_tx, target_rx) = watch::channel(target);
    let mut shutdown = compute.subscribe_shutdown();
    let config = LeaseConfig::default();
    let renewals = neon_clients::keep_lease(request, target_rx, &config, &cancel);
    tokio::pin!(renewals);
    let end = tokio::select! {
        end = &mut renewals => end,
        () = follow_spec(&compute, &target_tx) => LeaseEnd::Cancelled,
        // The guard `wait_for` returns must not live on: it blocks later shutdown requests.
        () = async { let _ = shutdown.wait_for(Option::is_some).await; } => {
            cancel.cancel();
            renewals.await
        }
    };
    if end == LeaseEnd::Cancelled {
        tracing::info!("lsn lease renewals stopped");
    }
}

/// Publishes the lease target of the spec in effect after each status change (a
/// reconfiguration ends with one); returns only if the status channel closes.
async fn follow_spec(compute: &Compute, target_tx: &watch::Sender<LeaseTarget>) {
    let mut status = compute.subscribe();
    while status.changed().await.is_ok() {
        let Some(target) = compute.with(|s| s.spec.as_ref().and_then(target_of)) else {
            continue;
        };
        target_tx.send_if_modified(|current| {
            let changed = *current != target;
            *current = target;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: &str, storage: bool) -> ValidatedSpec {
        let storage = if storage {
            r#""tenant_id": "b0554b632bd4d547a63b86c3630317e8",
               "timeline_id": "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d",
               "pageserver_connstring": "postgresql://no_user@127.0.0.1:6400",
               "storage_auth_token": "tok",
               "safekeeper_connstrings": ["127.0.0.1:5454"],"#
        } else {
            ""
        };
        let text = format!(
            r#"{{"format_version": 1.0, "mode": {mode}, {storage}
                "cluster": {{"roles": [], "databases": [], "settings": []}}}}"#
        );
        ValidatedSpec::from_json(&text).unwrap()
    }

    #[test]
    fn only_static_computes_with_storage_lease() {
        let check = |mode: &str, storage: bool, expect: Option<&str>| {
            let got = lease_of(&spec(mode, storage)).map(|(r, t)| {
                format!(
                    "{} {} {} token={:?} shards={:?}",
                    r.tenant_id,
                    r.timeline_id,
                    r.lsn,
                    t.auth_token,
                    t.pageserver.shards.keys().collect::<Vec<_>>()
                )
            });
            assert_eq!(got.as_deref(), expect, "{mode} storage={storage}");
        };
        check(
            r#"{"Static": "0/16B3748"}"#,
            true,
            Some(
                r#"b0554b632bd4d547a63b86c3630317e8 a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d 0/16B3748 token=Some("tok") shards=["0000"]"#,
            ),
        );
        check(r#"{"Static": "0/16B3748"}"#, false, None);
        check(r#""Primary""#, true, None);
        check(r#""Replica""#, true, None);
    }
}
