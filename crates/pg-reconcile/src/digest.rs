//! The converged-catalog digest, so that a cluster that needs nothing is recognised on one
//! connection instead of one per database.
//!
//! After an apply in which every operation succeeded on a fully observed cluster, the
//! reconciler records in the system database ([`RECORD_TABLE`], in schema `neon`, which the
//! reconciler keeps there for compute_ctl's own objects) a digest of what it converged to: the spec's catalog inputs (the
//! whole spec but the fields that change from start to start without touching the catalog:
//! tokens, storage addresses, timestamps), the plan options and the reconciler's version
//! ([`catalog_digest`], pure). When the next reconcile reads the same digest and the
//! cluster-wide catalog (roles, memberships, databases, the system database's contents, all
//! still observed) needs nothing, the contents of the other databases (schema `public`: owner,
//! `CREATE` for `web_access`, default privileges) are taken as converged and not observed.
//!
//! What that trusts: a change a database owner made in their own database's schema `public`
//! since the last full apply is repaired by the next apply that observes it (the next spec
//! change, or anything cluster-wide to do), not by every start. Upstream's control plane gets
//! the same on wake-up with `skip_pg_catalog_updates`, which skips the catalog entirely.

use compute_spec::ValidatedSpec;
use sha2::{Digest, Sha256};

use crate::PlanOptions;

/// Where the digest is kept: one row, key 0.
pub(crate) const RECORD_TABLE: &str = "neon.compute_ctl_catalog_digest";

/// Whether the table exists (asked first: a failed read would put an ERROR in the server log).
pub(crate) const EXISTS: &str =
    "SELECT pg_catalog.to_regclass('neon.compute_ctl_catalog_digest') IS NOT NULL";

/// Reads the recorded digest, once [`EXISTS`] said the table is there.
pub(crate) const READ: &str = "SELECT digest FROM neon.compute_ctl_catalog_digest WHERE key = 0";

/// Changes with the meaning of the digest's inputs.
const FORMAT: &str = "catalog-digest-1";

/// Top-level spec fields left out of the digest: they change between starts of the same
/// compute (tokens, storage addresses and generations, request identifiers, the apply
/// concurrency) and the planner does not read them.
const VOLATILE_FIELDS: &[&str] = &[
    "timestamp",
    "operation_uuid",
    "storage_auth_token",
    "pageserver_connstring",
    "pageserver_connection_info",
    "safekeeper_connstrings",
    "safekeepers_generation",
    "shard_stripe_size",
    "reconfigure_concurrency",
];

/// The digest (hex SHA-256) of what a successful apply of `spec` with `options` converges
/// to.
pub(crate) fn catalog_digest(spec: &ValidatedSpec, options: &PlanOptions) -> String {
    let mut inputs = serde_json::to_value(spec.spec()).unwrap_or(serde_json::Value::Null);
    if let Some(fields) = inputs.as_object_mut() {
        for field in VOLATILE_FIELDS {
            fields.remove(*field);
        }
    }
    let mut hasher = Sha256::new();
    for part in [
        FORMAT,
        env!("CARGO_PKG_VERSION"),
        &options.privileged_role_name,
        &options.superuser,
        &options.system_database,
        if options.neon_extension {
            "neon"
        } else {
            "vanilla"
        },
        &inputs.to_string(),
    ] {
        hasher.update(part.len().to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The statements recording `digest` (made by [`catalog_digest`]: hex digits only), creating
/// the schema and table if needed.
pub(crate) fn record_sql(digest: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS neon; \
         CREATE TABLE IF NOT EXISTS {RECORD_TABLE} \
           (key pg_catalog.int4 NOT NULL PRIMARY KEY, digest pg_catalog.text NOT NULL); \
         INSERT INTO {RECORD_TABLE} (key, digest) VALUES (0, {}) \
           ON CONFLICT (key) DO UPDATE SET digest = EXCLUDED.digest",
        pg_quote::quote_literal(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> ValidatedSpec {
        ValidatedSpec::from_json(&format!(
            r#"{{"format_version": 1.0, {extra} "cluster": {{"roles": [{{"name": "alice"}}],
                "databases": [{{"name": "app", "owner": "alice"}}]}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn volatile_fields_do_not_change_it_and_catalog_inputs_do() {
        let options = PlanOptions::default();
        let base = catalog_digest(&spec(""), &options);
        assert_eq!(base.len(), 64);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        let volatile = spec(
            r#""storage_auth_token": "t1", "operation_uuid": "u", "timestamp": "2026-01-01",
               "safekeeper_connstrings": ["127.0.0.1:1"], "reconfigure_concurrency": 3,"#,
        );
        assert_eq!(catalog_digest(&volatile, &options), base);
        let audited = spec(r#""audit_log_level": "Log","#);
        assert_ne!(catalog_digest(&audited, &options), base);
        let other_role = ValidatedSpec::from_json(
            r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "bob"}],
                "databases": [{"name": "app", "owner": "bob"}]}}"#,
        )
        .unwrap();
        assert_ne!(catalog_digest(&other_role, &options), base);
        let neon = PlanOptions {
            neon_extension: true,
            ..PlanOptions::default()
        };
        assert_ne!(catalog_digest(&spec(""), &neon), base);
        let sql = record_sql(&base);
        assert!(sql.contains(&format!("VALUES (0, '{base}')")), "{sql}");
    }
}
