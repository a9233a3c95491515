//! `cluster.settings`: names, values by vartype, duplicates.

use std::collections::HashMap;

use super::Rules;
use crate::spec::{ComputeSpec, GenericOption};
use crate::validate::codes;
use crate::values;

/// Whether a value is an ALL_CAPS template placeholder such as `TENANT_ID`.
pub(super) fn is_placeholder(value: &str) -> bool {
    value.len() >= 2
        && value.starts_with(|c: char| c.is_ascii_uppercase())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

pub(super) fn check_settings(r: &mut Rules<'_>, spec: &ComputeSpec) {
    let settings = spec.cluster.settings.as_deref().unwrap_or_default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in settings.iter().enumerate() {
        let at = format!("/cluster/settings/{i}");
        if !values::is_guc_name(&s.name) {
            r.error(
                codes::INVALID_SETTING_NAME,
                &format!("{at}/name"),
                format!(
                    "{:?} is not a setting name: a letter or underscore, then letters, digits and underscores, optionally one dot and a second such part (include directives are not settings)",
                    s.name
                ),
            );
        }
        let Some(value) = &s.value else {
            r.error(
                codes::MISSING_VALUE,
                &at,
                format!("setting {:?} has no value", s.name),
            );
            continue;
        };
        let value_at = format!("{at}/value");
        r.config_text(&format!("value of setting {:?}", s.name), value, &value_at);
        check_vartype(r, s, value, &at);
        let key = s.name.to_ascii_lowercase();
        match seen.get(&key) {
            None => {
                seen.insert(key, i);
            }
            Some(&first) => {
                let same = settings[first].value == s.value;
                if STORAGE_GUCS.contains(&key.as_str()) && !same {
                    r.error(
                        codes::CONFLICTING_STORAGE_SETTING,
                        &value_at,
                        format!(
                            "storage setting {:?} is given twice with different values (first at /cluster/settings/{first})",
                            s.name
                        ),
                    );
                } else {
                    r.warning(
                        codes::DUPLICATE_SETTING,
                        &format!("{at}/name"),
                        format!(
                            "setting {:?} is given twice (first at /cluster/settings/{first}){}",
                            s.name,
                            if same { "" } else { "; the last value wins" }
                        ),
                    );
                }
            }
        }
    }
}

/// Checks a setting's value against its vartype (`at` is the setting's pointer).
fn check_vartype(r: &mut Rules<'_>, s: &GenericOption, value: &str, at: &str) {
    let (ok, expected) = match s.vartype.as_str() {
        "bool" => (
            values::is_pg_bool(value),
            "a boolean (on/off, true/false, yes/no, 1/0)",
        ),
        "integer" => (
            values::is_pg_integer(value),
            "an integer, optionally with a unit such as 32MB or 5s",
        ),
        "real" => (values::is_pg_real(value), "a number"),
        "enum" => (!value.trim().is_empty(), "a non-empty enum value"),
        "string" => (true, ""),
        other => {
            r.warning(
                codes::UNKNOWN_VARTYPE,
                &format!("{at}/vartype"),
                format!(
                    "unknown vartype {other:?} of setting {:?} (known: bool, integer, real, enum, string); the value is written bare if it is one plain token, quoted otherwise",
                    s.name
                ),
            );
            (true, "")
        }
    };
    if !ok {
        let shown = if is_secret_setting(&s.name) {
            "<hidden>".to_owned()
        } else {
            format!("{value:?}")
        };
        r.error(
            codes::VARTYPE_MISMATCH,
            &format!("{at}/value"),
            format!(
                "value {shown} of setting {:?} is not {expected}, as its vartype {:?} requires",
                s.name, s.vartype
            ),
        );
    }
}

pub(super) const STORAGE_GUCS: &[&str] = &[
    "neon.tenant_id",
    "neon.timeline_id",
    "neon.pageserver_connstring",
    "neon.safekeepers",
    "neon.stripe_size",
];

fn is_secret_setting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token") || n.contains("password") || n.contains("secret")
}

/// Index and value of the first setting named `name`.
pub(super) fn setting<'a>(spec: &'a ComputeSpec, name: &str) -> Option<(usize, &'a str)> {
    spec.cluster
        .settings
        .as_ref()?
        .iter()
        .enumerate()
        .find(|(_, o)| o.name == name)
        .and_then(|(i, o)| Some((i, o.value.as_deref()?)))
}
