//! Delta operations: simulated in order over the names they touch.

use std::collections::{HashMap, HashSet};

use super::Rules;
use crate::spec::{ComputeSpec, DeltaAction, DeltaOp};
use crate::validate::{ValidationOptions, codes};

/// The names delta operations touch, per kind (0: role, 1: database).
struct Names<'s> {
    /// Declared by the spec.
    declared: [HashSet<&'s str>; 2],
    /// Name → index of the operation that deleted or renamed it away.
    gone: [HashMap<&'s str, usize>; 2],
    /// Name → index of the operation that produced it by a rename.
    produced: [HashMap<&'s str, usize>; 2],
}

/// Simulates the delta operations in order over the names they touch.
pub(super) fn check_delta_operations(
    r: &mut Rules<'_>,
    spec: &ComputeSpec,
    options: &ValidationOptions,
) {
    let Some(ops) = &spec.delta_operations else {
        return;
    };
    let mut names = Names {
        declared: [
            spec.cluster.roles.iter().map(|x| x.name.as_str()).collect(),
            spec.cluster
                .databases
                .iter()
                .map(|x| x.name.as_str())
                .collect(),
        ],
        gone: Default::default(),
        produced: Default::default(),
    };
    for (i, op) in ops.iter().enumerate() {
        let at = format!("/delta_operations/{i}");
        let Some(action) = op.kind() else {
            r.warning(
                codes::DELTA_UNKNOWN_ACTION,
                &format!("{at}/action"),
                format!(
                    "unknown delta action {:?}; compute_ctl ignores it (known: delete_role, rename_role, delete_db, rename_db)",
                    op.action
                ),
            );
            continue;
        };
        check_common(r, &names, op, action, &at, options);
        match action {
            DeltaAction::DeleteRole | DeltaAction::DeleteDb => {
                check_delete(r, &mut names, spec, op, action, i);
            }
            DeltaAction::RenameRole | DeltaAction::RenameDb => {
                check_rename(r, &mut names, op, action, i);
                check_rename_target(r, op, action, i, options);
            }
        }
    }
}

/// The kind index (0: role, 1: database) and its name for messages.
fn kind_of(action: DeltaAction) -> (usize, &'static str) {
    match action {
        DeltaAction::DeleteRole | DeltaAction::RenameRole => (0, "role"),
        DeltaAction::DeleteDb | DeltaAction::RenameDb => (1, "database"),
    }
}

/// What every known operation is checked for: its name, provided roles, earlier removals.
fn check_common(
    r: &mut Rules<'_>,
    names: &Names<'_>,
    op: &DeltaOp,
    action: DeltaAction,
    at: &str,
    options: &ValidationOptions,
) {
    let (kind, what) = kind_of(action);
    r.identifier(what, &op.name, || format!("{at}/name"));
    if kind == 0 && options.provided_roles.contains(&op.name) {
        r.error(
            codes::DELTA_PROVIDED_ROLE,
            &format!("{at}/name"),
            format!(
                "role {:?} is provided by the compute itself; a delta operation must not delete or rename it",
                op.name
            ),
        );
    }
    if kind == 1 && options.system_databases.contains(&op.name) {
        r.error(
            codes::SYSTEM_DATABASE,
            &format!("{at}/name"),
            format!(
                "database {:?} is one the compute needs (a template, or the one compute_ctl connects to); a delta operation must not delete or rename it",
                op.name
            ),
        );
    }
    if let Some(&earlier) = names.gone[kind].get(op.name.as_str()) {
        r.error(
            codes::DELTA_CONFLICT,
            &format!("{at}/name"),
            format!(
                "{what} {:?} no longer exists here: delta operation {earlier} already deleted or renamed it",
                op.name
            ),
        );
    }
}

/// `delete_role` / `delete_db` (operation `i`).
fn check_delete<'s>(
    r: &mut Rules<'_>,
    names: &mut Names<'s>,
    spec: &ComputeSpec,
    op: &'s DeltaOp,
    action: DeltaAction,
    i: usize,
) {
    let (kind, what) = kind_of(action);
    let at = format!("/delta_operations/{i}/name");
    if names.declared[kind].contains(op.name.as_str()) {
        r.error(
            codes::DELTA_DELETES_DECLARED,
            &at,
            format!(
                "{what} {:?} is deleted, but the spec declares it: every start would drop it and create it again, losing its contents",
                op.name
            ),
        );
    }
    if action == DeltaAction::DeleteRole {
        for (j, db) in spec.cluster.databases.iter().enumerate() {
            if db.owner == op.name {
                r.error(
                    codes::DELETE_ROLE_OWNS_DATABASE,
                    &at,
                    format!(
                        "role {:?} is deleted but owns database {:?} of the spec (/cluster/databases/{j})",
                        op.name, db.name
                    ),
                );
            }
        }
    }
    names.gone[kind].insert(&op.name, i);
    names.produced[kind].remove(op.name.as_str());
}

/// A rename onto a name the compute provides: a provided role (`cloud_admin`, the privileged
/// role, …; reserved `pg_*` names are reported as such) or a system database. PostgreSQL
/// refuses it, or, when the target does not exist yet, the compute's role or database would
/// then be the renamed one.
fn check_rename_target(
    r: &mut Rules<'_>,
    op: &DeltaOp,
    action: DeltaAction,
    i: usize,
    options: &ValidationOptions,
) {
    let Some(new_name) = op.new_name.as_deref() else {
        return;
    };
    let at = format!("/delta_operations/{i}/new_name");
    let old = &op.name;
    if action == DeltaAction::RenameRole
        && options.provided_roles.contains(new_name)
        && !new_name.starts_with("pg_")
    {
        r.error(
            codes::DELTA_PROVIDED_ROLE,
            &at,
            format!(
                "role {old:?} is renamed to {new_name:?}, a role the compute provides itself; a delta operation must not rename onto it"
            ),
        );
    }
    if action == DeltaAction::RenameDb && options.system_databases.contains(new_name) {
        r.error(
            codes::SYSTEM_DATABASE,
            &at,
            format!(
                "database {old:?} is renamed to {new_name:?}, a database the compute needs; a delta operation must not rename onto it"
            ),
        );
    }
}

/// `rename_role` / `rename_db` (operation `i`).
fn check_rename<'s>(
    r: &mut Rules<'_>,
    names: &mut Names<'s>,
    op: &'s DeltaOp,
    action: DeltaAction,
    i: usize,
) {
    let (kind, what) = kind_of(action);
    let at = format!("/delta_operations/{i}");
    let Some(new_name) = op.new_name.as_deref() else {
        r.error(
            codes::DELTA_MISSING_NEW_NAME,
            &at,
            format!("rename of {what} {:?} has no new_name", op.name),
        );
        return;
    };
    let new_at = format!("{at}/new_name");
    r.identifier(what, new_name, || new_at.clone());
    if kind == 0 {
        super::reserved_role_name(r, new_name, &new_at);
    }
    if new_name == op.name {
        r.error(
            codes::DELTA_RENAME_ONTO_EXISTING,
            &new_at,
            format!("{what} {:?} is renamed onto itself", op.name),
        );
    } else if let Some(&earlier) = names.produced[kind].get(new_name) {
        r.error(
            codes::DELTA_RENAME_ONTO_EXISTING,
            &new_at,
            format!(
                "{what} {:?} is renamed to {new_name:?}, which delta operation {earlier} already produced",
                op.name
            ),
        );
    } else if names.declared[kind].contains(op.name.as_str()) {
        r.error(
            codes::DELTA_RENAME_SOURCE_DECLARED,
            &format!("{at}/name"),
            format!(
                "{what} {:?} is renamed to {new_name:?}, but the spec still declares {:?}: it would be created again",
                op.name, op.name
            ),
        );
    }
    if !names.declared[kind].contains(new_name) {
        r.warning(
            codes::DELTA_RENAME_TARGET_UNDECLARED,
            &new_at,
            format!(
                "{what} {:?} is renamed to {new_name:?}, which the spec does not declare",
                op.name
            ),
        );
    }
    names.gone[kind].insert(&op.name, i);
    names.gone[kind].remove(new_name);
    names.produced[kind].insert(new_name, i);
}
