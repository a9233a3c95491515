//! A spec refused by validation or by the reconciler's option allow-list is refused before
//! anything touches the server: the catalog is byte for byte the same afterwards.

mod common;

use common::SUPERUSER;
use compute_spec::{ValidatedSpec, ValidationOptions, ValidationReport, codes};
use test_postgres::TestPostgres;

/// What compute_ctl does with a spec text before acting on it: validation with its provided
/// roles, plus the reconciler's option checks, located in the text.
fn accept(text: &str) -> Result<ValidatedSpec, ValidationReport> {
    let options = ValidationOptions::default().with_provided_role(SUPERUSER);
    let mut validation = compute_spec::validate_json(text, &options);
    if let Some(spec) = &validation.spec {
        let extra = pg_reconcile::option_diagnostics(spec, validation.spec_pointer);
        validation.report.diagnostics.extend(extra);
        compute_spec::locate_diagnostics(text, &mut validation.report.diagnostics);
    }
    validation.into_validated()
}

/// Accepts `text` and reconciles the server to it, as compute_ctl would.
async fn accept_and_reconcile(
    pg: &TestPostgres,
    text: &str,
) -> Result<pg_reconcile::Reconciled, ValidationReport> {
    let spec = accept(text)?;
    let reconciled = pg_reconcile::reconcile(
        &spec,
        &common::plan_options(),
        &common::connection(pg),
        &pg_reconcile::Counters::default(),
    )
    .await
    .expect("reconcile an accepted spec");
    Ok(reconciled)
}

const BASELINE: &str = r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice", "encrypted_password": "md5e2b8b3ea2f4ea7c8ef9d4f0d2e2b5c1a"}],
  "databases": [{"name": "appdb", "owner": "alice"}]}}"#;

/// Each bad spec also asks for a new role `bob` (and a database) that a partial application
/// would create: the dump would show it.
const BAD_SPECS: &[(&str, &str, &str)] = &[
    (
        codes::DUPLICATE_ROLE,
        "/cluster/roles/2/name",
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob"}, {"name": "alice"}],
  "databases": [{"name": "bobdb", "owner": "bob"}]}}"#,
    ),
    (
        codes::UNKNOWN_OWNER,
        "/cluster/databases/1/owner",
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob"}],
  "databases": [{"name": "bobdb", "owner": "bob"}, {"name": "lost", "owner": "nobody"}]}}"#,
    ),
    (
        pg_reconcile::OPTION_NOT_ALLOWED,
        "/cluster/roles/1",
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob", "options": [{"name": "SUPERUSER", "vartype": "bool"}]}],
  "databases": [{"name": "bobdb", "owner": "bob"}]}}"#,
    ),
    (
        codes::DELTA_DELETES_DECLARED,
        "/delta_operations/0",
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob"}],
  "databases": [{"name": "bobdb", "owner": "bob"}]},
  "delta_operations": [{"action": "delete_role", "name": "alice"}]}"#,
    ),
];

#[tokio::test]
async fn rejected_specs_leave_the_catalog_untouched() {
    let pg = TestPostgres::start().expect("start PostgreSQL 15");
    let baseline = accept_and_reconcile(&pg, BASELINE)
        .await
        .expect("the baseline spec is accepted");
    assert!(baseline.report.is_success());
    let before = common::catalog_dump(&pg);
    assert!(
        before.contains("|alice|"),
        "the dump shows roles:\n{before}"
    );

    for (code, pointer, text) in BAD_SPECS {
        let Err(report) = accept_and_reconcile(&pg, text).await else {
            panic!("accepted a spec that should fail with {code}:\n{text}");
        };
        let found = report
            .diagnostics
            .iter()
            .find(|d| d.code == *code)
            .unwrap_or_else(|| panic!("no {code} in {:?}", report.diagnostics));
        assert!(
            found.pointer.starts_with(pointer),
            "{code} at {} instead of {pointer}",
            found.pointer
        );
        assert!(found.location.is_some(), "{code} has a line:column");
        assert_eq!(
            common::catalog_dump(&pg),
            before,
            "{code} changed the catalog"
        );
    }

    // The reconciler refuses a spec it cannot render on its own too, before any statement:
    // a caller that skipped the option checks still changes nothing.
    let superuser_role = BAD_SPECS[2].2;
    let validated = ValidatedSpec::from_json_with(
        superuser_role,
        &ValidationOptions::default().with_provided_role(SUPERUSER),
    )
    .expect("compute-spec alone does not know the option allow-list");
    let refused = pg_reconcile::reconcile(
        &validated,
        &common::plan_options(),
        &common::connection(&pg),
        &pg_reconcile::Counters::default(),
    )
    .await;
    let Err(error) = refused else {
        panic!("reconcile applied a SUPERUSER role option");
    };
    assert!(error.to_string().contains("SUPERUSER"), "{error}");
    assert_eq!(
        common::catalog_dump(&pg),
        before,
        "reconcile changed the catalog"
    );

    // The dump does see a change: the good part of the bad specs, accepted, shows up.
    let good = r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob"}],
  "databases": [{"name": "appdb", "owner": "alice"}, {"name": "bobdb", "owner": "bob"}]}}"#;
    let applied = accept_and_reconcile(&pg, good).await.expect("accepted");
    assert!(applied.report.is_success());
    let after = common::catalog_dump(&pg);
    assert_ne!(after, before);
    assert!(
        after.contains("|bob|") && after.contains("|bobdb|"),
        "{after}"
    );
}
