//! End-to-end tests of the LSN lease of a Static compute, through the real `compute_ctl`
//! binary, the real PostgreSQL 15 and the test pageserver: the pageserver receives `lease lsn`
//! with the compute's tenant, timeline and LSN and the storage token; a short lease is renewed;
//! `/configure` with another pageserver moves the lease there at once; no lease after
//! `/terminate`; a NULL answer (LSN below the GC cutoff) ends the renewals; a pageserver that
//! never answers does not hold up a SIGTERM; a Primary never leases.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::time::Duration;

use harness::{Args, Ctl, TENANT, TIMELINE, eventually};
use neon_test_servers::{LeaseAnswer, LeaseFault, TestPageserver};
use serde_json::json;

const TOKEN: &str = "lease-storage-token";
const LSN: &str = "0/16B3748";

fn spec(mode: serde_json::Value, pageserver: &str, safekeeper: Option<&str>) -> String {
    json!({
        "format_version": 1.0,
        "mode": mode,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": pageserver,
        "safekeeper_connstrings": safekeeper.into_iter().collect::<Vec<_>>(),
        "storage_auth_token": TOKEN,
        "cluster": {
            "roles": [],
            "databases": [],
            "settings": [{"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}]
        }
    })
    .to_string()
}

fn static_spec(pageserver: &str) -> String {
    spec(json!({ "Static": LSN }), pageserver, None)
}

async fn pageserver(lease_length: Duration) -> TestPageserver {
    let mut config = harness::pageserver_config("compute-ctl-lease-tests", TOKEN).await;
    config.lease_length = lease_length;
    TestPageserver::start(config).await.unwrap()
}

/// Waits up to 20 s until `server` has received at least `n` lease requests.
async fn wait_leases(ctl: &Ctl, server: &TestPageserver, n: usize) {
    let got = eventually(Duration::from_secs(20), || async {
        (server.leases().len() >= n).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{} lease(s) instead of {n}: {:?}\n{}",
        server.leases().len(),
        server.leases(),
        ctl.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_compute_leases_renews_follows_configure_and_stops_at_terminate() {
    let first = pageserver(Duration::from_secs(600)).await;
    let second = pageserver(Duration::from_millis(1000)).await;
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), static_spec(&first.connstr())],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    wait_leases(&ctl, &first, 1).await;
    let lease = &first.leases()[0];
    assert_eq!(lease.query, format!("lease lsn {TENANT} {TIMELINE} {LSN} "));
    assert_eq!(lease.password_ok, Some(true), "the storage token");
    assert!(matches!(lease.answer, LeaseAnswer::Granted(_)), "{lease:?}");
    ctl.wait_log("lsn lease acquired").await;

    // A 10-minute lease is renewed only after 9 minutes; a new pageserver gets it at once.
    let (code, body) = ctl
        .request("POST", "/configure", &static_spec(&second.connstr()), None)
        .await;
    assert_eq!(code, 200, "{body}\n{}", ctl.log());
    wait_leases(&ctl, &second, 1).await;
    assert_eq!(first.leases().len(), 1, "{:?}", first.leases());

    // The second pageserver grants 1 s: renewed every half second.
    wait_leases(&ctl, &second, 3).await;
    let times: Vec<_> = second.leases().iter().map(|l| l.at).collect();
    for pair in times[1..].windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(gap >= Duration::from_millis(400), "renewed after {gap:?}");
    }

    let (code, body) = ctl.request("POST", "/terminate", "", None).await;
    assert_eq!(code, 200, "{body}");
    let after_terminate = second.leases().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        second.leases().len(),
        after_terminate,
        "no lease after /terminate: {:?}",
        second.leases()
    );
    assert_eq!(ctl.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
    let log = ctl.log();
    assert!(log.contains("lsn lease renewals stopped"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn null_answer_below_the_gc_cutoff_ends_the_renewals() {
    let server = pageserver(Duration::from_millis(600)).await;
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), static_spec(&server.connstr())],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    wait_leases(&ctl, &server, 2).await;
    server.set_lease_settings(|s| s.gc_cutoff = Some("1/0".parse().unwrap()));
    let refused = eventually(Duration::from_secs(10), || async {
        server
            .leases()
            .iter()
            .any(|l| l.answer == LeaseAnswer::Null)
            .then_some(())
    })
    .await;
    assert!(refused.is_some(), "{:?}", server.leases());
    ctl.wait_log("lsn lease refused").await;
    let count = server.leases().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server.leases().len(), count, "no renewal after NULL");
    assert_eq!(
        ctl.get_json("/status").await["status"],
        "running",
        "the compute keeps running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_lease_does_not_hold_up_sigterm() {
    let server = pageserver(Duration::from_secs(600)).await;
    server.set_lease_settings(|s| s.fault = Some(LeaseFault::Stall));
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), static_spec(&server.connstr())],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    wait_leases(&ctl, &server, 1).await;
    assert_eq!(server.leases()[0].answer, LeaseAnswer::Stalled);
    let sent = std::time::Instant::now();
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    ctl.wait_exit(Duration::from_secs(10)).await;
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        sent.elapsed()
    );
    assert_eq!(server.leases().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_never_leases() {
    let server = pageserver(Duration::from_millis(500)).await;
    let mut config = neon_test_servers::SafekeeperConfig::new(
        TENANT.parse().unwrap(),
        TIMELINE.parse().unwrap(),
        LSN.parse().unwrap(),
    );
    config.token = Some(TOKEN.into());
    let safekeeper = neon_test_servers::TestSafekeeper::start(config)
        .await
        .unwrap();
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            spec(
                json!("Primary"),
                &server.connstr(),
                Some(&safekeeper.addr()),
            ),
        ],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(server.leases().is_empty(), "{:?}", server.leases());
    assert!(
        !server
            .records()
            .iter()
            .flat_map(|r| &r.queries)
            .any(|q| q.starts_with("lease")),
        "{:?}",
        server.records()
    );
    assert!(!ctl.log().contains("lsn lease"), "{}", ctl.log());
}
