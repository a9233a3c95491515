//! Delta operations: simulated in order over the names they touch.

use std::collections::{HashMap, HashSet};

use super::Rules;
use crate::spec::{ComputeSpec, DeltaAction};
use crate::validate::{ValidationOptions, codes};

/// Simulates the delta operations in order over the names they touch.
pub(super) fn check_delta_operations(
    r: &mut Rules<'_>,
    spec: &ComputeSpec,
    options: &ValidationOptions,
) {
    let Some(ops) = &spec.delta_operations else {
        return;
    };
    let spec_roles: HashSet<&str> = spec.cluster.roles.iter().map(|x| x.name.as_str()).collect();
    let spec_dbs: HashSet<&str> = spec
        .cluster
        .databases
        .iter()
        .map(|x| x.name.as_str())
        .collect();
    // Per kind (role, database): name → index of the op that removed it / produced it.
    let mut gone: [HashMap<&str, usize>; 2] = Default::default();
    let mut produced: [HashMap<&str, usize>; 2] = Default::default();
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
        let (kind, what, declared) = match action {
            DeltaAction::DeleteRole | DeltaAction::RenameRole => (0, "role", &spec_roles),
            DeltaAction::DeleteDb | DeltaAction::RenameDb => (1, "database", &spec_dbs),
        };
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
        if let Some(&earlier) = gone[kind].get(op.name.as_str()) {
            r.error(
                codes::DELTA_CONFLICT,
                &format!("{at}/name"),
                format!(
                    "{what} {:?} no longer exists here: delta operation {earlier} already deleted or renamed it",
                    op.name
                ),
            );
        }
        match action {
            DeltaAction::DeleteRole | DeltaAction::DeleteDb => {
                if declared.contains(op.name.as_str()) {
                    r.warning(
                        codes::DELTA_DELETES_DECLARED,
                        &format!("{at}/name"),
                        format!(
                            "{what} {:?} is deleted, but the spec declares it: it is dropped and created again",
                            op.name
                        ),
                    );
                }
                if action == DeltaAction::DeleteRole {
                    for (j, db) in spec.cluster.databases.iter().enumerate() {
                        if db.owner == op.name {
                            r.error(
                                codes::DELETE_ROLE_OWNS_DATABASE,
                                &format!("{at}/name"),
                                format!(
                                    "role {:?} is deleted but owns database {:?} of the spec (/cluster/databases/{j})",
                                    op.name, db.name
                                ),
                            );
                        }
                    }
                }
                gone[kind].insert(&op.name, i);
                produced[kind].remove(op.name.as_str());
            }
            DeltaAction::RenameRole | DeltaAction::RenameDb => {
                let Some(new_name) = op.new_name.as_deref() else {
                    r.error(
                        codes::DELTA_MISSING_NEW_NAME,
                        &at,
                        format!("rename of {what} {:?} has no new_name", op.name),
                    );
                    continue;
                };
                let new_at = format!("{at}/new_name");
                r.identifier(what, new_name, || new_at.clone());
                if new_name == op.name {
                    r.error(
                        codes::DELTA_RENAME_ONTO_EXISTING,
                        &new_at,
                        format!("{what} {:?} is renamed onto itself", op.name),
                    );
                } else if let Some(&earlier) = produced[kind].get(new_name) {
                    r.error(
                        codes::DELTA_RENAME_ONTO_EXISTING,
                        &new_at,
                        format!(
                            "{what} {:?} is renamed to {new_name:?}, which delta operation {earlier} already produced",
                            op.name
                        ),
                    );
                } else if declared.contains(op.name.as_str()) {
                    r.error(
                        codes::DELTA_RENAME_SOURCE_DECLARED,
                        &format!("{at}/name"),
                        format!(
                            "{what} {:?} is renamed to {new_name:?}, but the spec still declares {:?}: it would be created again",
                            op.name, op.name
                        ),
                    );
                }
                if !declared.contains(new_name) {
                    r.warning(
                        codes::DELTA_RENAME_TARGET_UNDECLARED,
                        &new_at,
                        format!(
                            "{what} {:?} is renamed to {new_name:?}, which the spec does not declare",
                            op.name
                        ),
                    );
                }
                gone[kind].insert(&op.name, i);
                gone[kind].remove(new_name);
                produced[kind].insert(new_name, i);
            }
        }
    }
}
