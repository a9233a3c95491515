//! A spec refused by validation (option allow-lists included) or by the planner is refused
//! before anything touches the server: the catalog is byte for byte the same afterwards.

mod common;

use common::SUPERUSER;
use compute_spec::{ValidatedSpec, ValidationOptions, ValidationReport, codes};
use test_postgres::TestPostgres;

/// What compute_ctl does with a spec text before acting on it: validation (option
/// allow-lists included) with its provided roles, located in the text.
fn accept(text: &str) -> Result<ValidatedSpec, ValidationReport> {
    let options = ValidationOptions::default().with_provided_role(SUPERUSER);
    ValidatedSpec::from_json_with(text, &options)
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
        codes::OPTION_NOT_ALLOWED,
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
    (
        codes::RESERVED_ROLE_NAME,
        "/cluster/roles/2/name",
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob"}, {"name": "public"}, {"name": "carol"}],
  "databases": [{"name": "bobdb", "owner": "bob"}]}}"#,
    ),
    (
        codes::SYSTEM_DATABASE,
        "/delta_operations/0/name",
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob"}],
  "databases": [{"name": "bobdb", "owner": "bob"}]},
  "delta_operations": [{"action": "delete_db", "name": "template1"}]}"#,
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

    // No acceptance path yields a `ValidatedSpec` with an option off the allow-list: the
    // reconciler can only be handed typed options. (It used to need its own check.)
    let superuser_role = BAD_SPECS[2].2;
    let options = ValidationOptions::default().with_provided_role(SUPERUSER);
    let parsed = compute_spec::validate_json(superuser_role, &options)
        .spec
        .expect("it parses");
    for refused in [
        ValidatedSpec::from_json_with(superuser_role, &options),
        ValidatedSpec::from_spec_with(parsed, &options),
    ] {
        let report = refused.expect_err("the allow-list is part of validation");
        assert!(
            report
                .diagnostics
                .iter()
                .any(|d| d.code == codes::OPTION_NOT_ALLOWED && d.message.contains("SUPERUSER")),
            "{report:?}"
        );
    }

    // The reconciler refuses on its own, before any statement, what only the catalog shows:
    // a membership in a role that does not exist.
    let validated = accept(
        r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice"}, {"name": "bob", "options": [{"name": "IN ROLE", "value": "ghost", "vartype": "string"}]}],
  "databases": [{"name": "bobdb", "owner": "bob"}]}}"#,
    )
    .expect("validation cannot know which roles exist");
    let refused = pg_reconcile::reconcile(
        &validated,
        &common::plan_options(),
        &common::connection(&pg),
        &pg_reconcile::Counters::default(),
    )
    .await;
    let Err(error) = refused else {
        panic!("reconcile applied a membership in a missing role");
    };
    assert!(error.to_string().contains("ghost"), "{error}");
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
