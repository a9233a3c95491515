//! The admin path: what compute_ctl needs to keep connecting, as its admin user
//! ([`ValidationOptions::admin_user`]) to its database ([`ValidationOptions::admin_database`]),
//! must not be changed by a spec. A spec role that is the admin user may not set `NOLOGIN`,
//! `VALID UNTIL` or `CONNECTION LIMIT`, nor a password when compute_ctl logs in with one
//! (without one, compute_ctl connects over trusted loopback: a warning only, since upstream's
//! docker-compose specs give `cloud_admin` a password for other clients); a spec database
//! that is the admin database may not refuse connections. (Deleting or renaming the admin user, a provided role or the
//! admin database is refused where delta operations are checked, `delta.rs`.)

use super::Rules;
use crate::options::{self as allow_list, DatabaseOption, ValidUntil};
use crate::spec::{ComputeSpec, GenericOption};
use crate::validate::{ValidationOptions, codes};

/// Checks the spec roles and databases that are compute_ctl's own.
pub(super) fn check_admin_path(r: &mut Rules<'_>, spec: &ComputeSpec, options: &ValidationOptions) {
    let admin = options.admin_user.as_str();
    for (i, role) in spec.cluster.roles.iter().enumerate() {
        if role.name != admin {
            continue;
        }
        if role.encrypted_password.is_some() {
            let at = format!("/cluster/roles/{i}/encrypted_password");
            if options.admin_password_login {
                r.error(
                    codes::ADMIN_ROLE_CHANGED,
                    &at,
                    format!(
                        "role {admin:?} is the user compute_ctl connects as, with a password; a spec must not set its password"
                    ),
                );
            } else {
                r.warning(
                    codes::ADMIN_ROLE_CHANGED,
                    &at,
                    format!(
                        "role {admin:?} is the user compute_ctl connects as; its password is set for other clients (compute_ctl logs in without one)"
                    ),
                );
            }
        }
        for (j, option) in role
            .options
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(change) = admin_role_change(admin, option) {
                r.error(
                    codes::ADMIN_ROLE_CHANGED,
                    &format!("/cluster/roles/{i}/options/{j}"),
                    format!(
                        "role {admin:?} is the user compute_ctl connects as; a spec must not {change}"
                    ),
                );
            }
        }
    }
    let database = options.admin_database.as_str();
    for (i, db) in spec.cluster.databases.iter().enumerate() {
        if db.name != database {
            continue;
        }
        for (j, option) in db.options.as_deref().unwrap_or_default().iter().enumerate() {
            let (typed, _) = allow_list::database_options(database, std::slice::from_ref(option));
            if typed.contains(&DatabaseOption::AllowConnections(false)) {
                r.error(
                    codes::SYSTEM_DATABASE,
                    &format!("/cluster/databases/{i}/options/{j}"),
                    format!(
                        "database {database:?} is the one compute_ctl connects to; a spec must not refuse connections to it"
                    ),
                );
            }
        }
    }
}

/// What `option` of the admin role would change that locks compute_ctl out, if anything. The
/// option is typed alone through the allow-list, so every spelling it accepts is caught;
/// options it refuses are reported there.
fn admin_role_change(admin: &str, option: &GenericOption) -> Option<&'static str> {
    let (typed, _) = allow_list::role_options(admin, std::slice::from_ref(option));
    if typed.login == Some(false) {
        Some("make it NOLOGIN")
    } else if typed.connection_limit.is_some_and(|n| n != -1) {
        Some("limit its connections (CONNECTION LIMIT)")
    } else if typed.valid_until.is_some_and(|v| v != ValidUntil::Infinity) {
        Some("make it expire (VALID UNTIL)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::{ValidationOptions, validate_json};

    /// The (severity, code, pointer) of every finding of `roles` + `databases` + `deltas`.
    fn check(options: &ValidationOptions, cluster: &str, deltas: &str, expect: &[&str]) {
        let text = format!(
            r#"{{"format_version": 1.0, "cluster": {cluster}, "delta_operations": {deltas}}}"#
        );
        let got: Vec<String> = validate_json(&text, options)
            .report
            .diagnostics
            .iter()
            .map(|d| format!("{} {} {}", d.severity, d.code, d.pointer))
            .collect();
        assert_eq!(got, expect, "{text}");
    }

    #[test]
    fn the_admin_path_follows_the_connection() {
        let defaults = ValidationOptions::default();
        let custom = ValidationOptions::default()
            .with_admin_user("web_admin")
            .with_admin_database("admin_db");
        let with_password = ValidationOptions {
            admin_password_login: true,
            ..custom.clone()
        };
        let nologin = |role: &str| {
            format!(
                r#"{{"roles": [{{"name": "{role}", "encrypted_password": "md5b2ad3f0a1c4e3e8e0d0f4c8ac2a1d9e7",
                    "options": [{{"name": "NOLOGIN", "vartype": "bool"}}]}}], "databases": []}}"#
            )
        };
        check(
            &defaults,
            &nologin("cloud_admin"),
            "[]",
            &[
                "warning admin-role-changed /cluster/roles/0/encrypted_password",
                "error admin-role-changed /cluster/roles/0/options/0",
            ],
        );
        // Another admin user: cloud_admin is then an ordinary (provided) role.
        check(&custom, &nologin("cloud_admin"), "[]", &[]);
        check(
            &with_password,
            &nologin("web_admin"),
            "[]",
            &[
                "error admin-role-changed /cluster/roles/0/encrypted_password",
                "error admin-role-changed /cluster/roles/0/options/0",
            ],
        );
        let empty = r#"{"roles": [], "databases": []}"#;
        check(
            &custom,
            empty,
            r#"[{"action": "rename_role", "name": "a", "new_name": "web_admin"},
                {"action": "delete_db", "name": "admin_db"},
                {"action": "rename_db", "name": "b", "new_name": "admin_db"}]"#,
            &[
                "warning delta-rename-target-undeclared /delta_operations/0/new_name",
                "error delta-provided-role /delta_operations/0/new_name",
                "error system-database /delta_operations/1/name",
                "warning delta-rename-target-undeclared /delta_operations/2/new_name",
                "error system-database /delta_operations/2/new_name",
            ],
        );
        let closed = r#"{"roles": [], "databases": [{"name": "admin_db", "owner": "web_admin",
            "options": [{"name": "allow connections", "value": "off", "vartype": "string"},
                        {"name": "ALLOW_CONNECTIONS", "value": "true", "vartype": "string"}]}]}"#;
        check(
            &custom,
            closed,
            "[]",
            &["error system-database /cluster/databases/0/options/0"],
        );
        check(
            &defaults,
            closed,
            "[]",
            &["error unknown-owner /cluster/databases/0/owner"],
        );
    }
}
