//! Storage settings: tenant, timeline, pageservers, safekeepers — their shapes, conflicts
//! between top-level fields and `neon.*` GUCs, and upstream's resolution order. Also the
//! free-text fields that end up in config files.

use std::collections::HashSet;

use super::Rules;
use super::settings::{is_placeholder, setting};
use crate::spec::{
    ComputeSpec, PageserverConnectionInfo, PageserverProtocol, PageserverShardConnectionInfo,
    PageserverShardInfo,
};
use crate::validate::{StorageSettings, codes};
use crate::{TenantId, TimelineId};

pub(super) fn check_storage(r: &mut Rules<'_>, spec: &ComputeSpec) {
    check_ids(r, spec);
    check_pageservers(r, spec);
    check_safekeepers(r, spec);
    check_resolved(r, spec);
}

/// Tenant and timeline GUCs: placeholders warn, malformed values fail, conflicts fail.
fn check_ids(r: &mut Rules<'_>, spec: &ComputeSpec) {
    id_guc::<TenantId>(
        r,
        spec,
        "neon.tenant_id",
        spec.tenant_id,
        "tenant_id",
        codes::INVALID_TENANT_ID,
    );
    id_guc::<TimelineId>(
        r,
        spec,
        "neon.timeline_id",
        spec.timeline_id,
        "timeline_id",
        codes::INVALID_TIMELINE_ID,
    );
}

/// A tenant or timeline id GUC against its top-level field.
fn id_guc<T: std::str::FromStr + PartialEq + std::fmt::Display>(
    r: &mut Rules<'_>,
    spec: &ComputeSpec,
    guc: &str,
    top: Option<T>,
    top_field: &str,
    code: &'static str,
) {
    let Some((i, value)) = setting(spec, guc) else {
        return;
    };
    let at = format!("/cluster/settings/{i}/value");
    match value.parse::<T>() {
        Ok(parsed) => {
            if let Some(top) = top.filter(|t| *t != parsed) {
                r.error(
                    codes::CONFLICTING_STORAGE_SETTING,
                    &at,
                    format!("{guc} is {parsed}, but {top_field} is {top}"),
                );
            }
        }
        Err(_) if is_placeholder(value) => r.warning(
            codes::PLACEHOLDER_VALUE,
            &at,
            format!(
                "{guc} is the template placeholder {value:?}; substitute a real value before use"
            ),
        ),
        Err(_) => r.error(
            code,
            &at,
            format!("{guc} {value:?} is not 32 hexadecimal digits"),
        ),
    }
}

/// Pageserver connstrings and connection info: shapes, and conflicts between the forms.
fn check_pageservers(r: &mut Rules<'_>, spec: &ComputeSpec) {
    if let (Some(top), Some((i, guc))) = (
        spec.pageserver_connstring.as_deref(),
        setting(spec, "neon.pageserver_connstring"),
    ) && top.trim() != guc.trim()
    {
        r.error(
            codes::CONFLICTING_STORAGE_SETTING,
            &format!("/cluster/settings/{i}/value"),
            "neon.pageserver_connstring differs from pageserver_connstring".to_owned(),
        );
    }
    if let Some(info) = &spec.pageserver_connection_info {
        check_connection_info(r, info);
        // The legacy forms, when also given, must name the same pageservers.
        let urls: Vec<&str> = info
            .shards
            .values()
            .filter_map(|shard| shard.pageservers.first()?.libpq_url.as_deref())
            .map(str::trim)
            .collect();
        let legacy = [(
            spec.pageserver_connstring.as_deref(),
            "/pageserver_connstring".to_owned(),
            "pageserver_connstring",
        )]
        .into_iter()
        .chain(setting(spec, "neon.pageserver_connstring").map(|(i, v)| {
            (
                Some(v),
                format!("/cluster/settings/{i}/value"),
                "neon.pageserver_connstring",
            )
        }));
        for (value, at, name) in legacy {
            let Some(value) = value else { continue };
            let listed: Vec<&str> = value.split(',').map(str::trim).collect();
            if !urls.is_empty() && listed != urls {
                r.error(
                    codes::CONFLICTING_STORAGE_SETTING,
                    &at,
                    format!(
                        "{name} names other pageservers than pageserver_connection_info, which wins"
                    ),
                );
            }
        }
    }
    if let (Some(top), Some((i, guc))) = (spec.shard_stripe_size, setting(spec, "neon.stripe_size"))
        && guc.trim().parse::<u32>().ok() != Some(top)
    {
        r.error(
            codes::CONFLICTING_STORAGE_SETTING,
            &format!("/cluster/settings/{i}/value"),
            format!("neon.stripe_size is {guc:?}, but shard_stripe_size is {top}"),
        );
    }
}

/// Safekeepers: addresses, duplicates, and conflicts between the list and the GUC.
fn check_safekeepers(r: &mut Rules<'_>, spec: &ComputeSpec) {
    let guc = setting(spec, "neon.safekeepers");
    let guc_list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if !spec.safekeeper_connstrings.is_empty() {
        let mut seen = HashSet::new();
        for (i, sk) in spec.safekeeper_connstrings.iter().enumerate() {
            let at = format!("/safekeeper_connstrings/{i}");
            r.config_text("safekeeper address", sk, &at);
            check_safekeeper_address(r, sk, &at);
            if !seen.insert(sk.trim()) && spec.mode.is_primary() {
                r.error(
                    codes::DUPLICATE_SAFEKEEPER,
                    &format!("/safekeeper_connstrings/{i}"),
                    format!("duplicate entry in safekeeper_connstrings: {sk:?}"),
                );
            }
        }
        if let Some((i, value)) = guc
            && guc_list(value) != spec.safekeeper_connstrings
        {
            r.error(
                codes::CONFLICTING_STORAGE_SETTING,
                &format!("/cluster/settings/{i}/value"),
                "neon.safekeepers differs from safekeeper_connstrings".to_owned(),
            );
        }
    } else if let Some((i, value)) = guc.filter(|_| spec.mode.is_primary()) {
        let mut seen = HashSet::new();
        for sk in guc_list(value) {
            check_safekeeper_address(r, &sk, &format!("/cluster/settings/{i}/value"));
            if !seen.insert(sk.clone()) {
                r.error(
                    codes::DUPLICATE_SAFEKEEPER,
                    &format!("/cluster/settings/{i}/value"),
                    format!("duplicate entry in neon.safekeepers: {sk:?}"),
                );
            }
        }
    }
}

/// The resolved storage settings: a Primary with a pageserver needs safekeepers, shards a
/// stripe size.
fn check_resolved(r: &mut Rules<'_>, spec: &ComputeSpec) {
    let storage = resolve_storage(spec);
    if spec.mode.is_primary() && storage.pageserver.is_some() && storage.safekeepers.is_empty() {
        r.error(
            codes::PRIMARY_WITHOUT_SAFEKEEPERS,
            "",
            "a Primary with a pageserver needs safekeepers: set safekeeper_connstrings or the neon.safekeepers setting".to_owned(),
        );
    }
    if let Some(ps) = &storage.pageserver
        && ps.shard_count > 1
        && ps.stripe_size.is_none()
    {
        r.error(
            codes::MISSING_STRIPE_SIZE,
            if spec.pageserver_connection_info.is_some() {
                "/pageserver_connection_info"
            } else {
                ""
            },
            format!(
                "{} pageserver shards need a stripe size (shard_stripe_size or neon.stripe_size)",
                ps.shard_count
            ),
        );
    }
}

/// Shard indexes are 4 hex digits, shard number then shard count, matching `shard_count`.
fn check_connection_info(r: &mut Rules<'_>, info: &PageserverConnectionInfo) {
    let expected = usize::from(info.shard_count.max(1));
    for (key, shard) in &info.shards {
        let at = format!(
            "/pageserver_connection_info/shards/{}",
            crate::shape::escape_pointer(key)
        );
        let parsed = (key.len() == 4 && key.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
            (
                u8::from_str_radix(&key[..2], 16).ok(),
                u8::from_str_radix(&key[2..], 16).ok(),
            )
        });
        match parsed {
            Some((Some(number), Some(count))) if count == info.shard_count && usize::from(number) < expected => {}
            _ => r.error(
                codes::INVALID_SHARD_INDEX,
                &at,
                format!(
                    "shard index {key:?} is not 4 hex digits <number><count> with count {:02x} and number below {expected}",
                    info.shard_count
                ),
            ),
        }
        if shard.pageservers.is_empty() {
            r.error(
                codes::INVALID_SHARD_INDEX,
                &format!("{at}/pageservers"),
                format!("shard {key:?} lists no pageserver"),
            );
        }
    }
    if info.shards.len() != expected {
        r.error(
            codes::INVALID_SHARD_INDEX,
            "/pageserver_connection_info/shards",
            format!(
                "{} shard(s) listed, {expected} expected for shard_count {}",
                info.shards.len(),
                info.shard_count
            ),
        );
    }
}

/// A safekeeper is `host:port` (IPv6 hosts in brackets), port 1..=65535.
fn check_safekeeper_address(r: &mut Rules<'_>, address: &str, at: &str) {
    let address = address.trim();
    let ok = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !ok {
        r.error(
            codes::INVALID_SAFEKEEPER_ADDRESS,
            at,
            format!("safekeeper address {address:?} is not host:port"),
        );
    }
}

/// Free-text fields that end up in config files or environment variables.
pub(super) fn check_config_fields(r: &mut Rules<'_>, spec: &ComputeSpec) {
    let fields = [
        ("pageserver_connstring", &spec.pageserver_connstring),
        ("project_id", &spec.project_id),
        ("branch_id", &spec.branch_id),
        ("endpoint_id", &spec.endpoint_id),
        ("storage_auth_token", &spec.storage_auth_token),
        ("logs_export_host", &spec.logs_export_host),
        ("endpoint_storage_addr", &spec.endpoint_storage_addr),
        ("endpoint_storage_token", &spec.endpoint_storage_token),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            r.config_text(name, value, &format!("/{name}"));
        }
    }
    if let Some(host) = &spec.logs_export_host
        && let Err(e) = crate::parse_syslog_target(host)
    {
        r.error(
            codes::INVALID_LOGS_EXPORT_HOST,
            "/logs_export_host",
            format!("logs_export_host {e}"),
        );
    }
    for (key, value) in spec.pgbouncer_settings.iter().flatten() {
        let at = format!("/pgbouncer_settings/{}", crate::shape::escape_pointer(key));
        r.config_text("pgbouncer setting name", key, &at);
        r.config_text(&format!("pgbouncer setting {key:?}"), value, &at);
        check_pgbouncer_setting(r, key, value, &at);
    }
}

/// What pgbouncer's ini parser cannot read back (no quoting exists there): a key outside
/// `[A-Za-z0-9_.*-]+`, a value with whitespace at either end. Control characters are
/// `config_text`'s.
fn check_pgbouncer_setting(r: &mut Rules<'_>, key: &str, value: &str, at: &str) {
    let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*');
    if key.is_empty() || !key.chars().all(key_char) {
        r.error(
            codes::INVALID_PGBOUNCER_SETTING,
            at,
            format!(
                "pgbouncer setting name {key:?} is not a pgbouncer.ini key \
                 (ASCII letters, digits and `_ . - *`)"
            ),
        );
    }
    if value.trim_matches([' ', '\t']) != value {
        r.error(
            codes::INVALID_PGBOUNCER_SETTING,
            at,
            format!(
                "pgbouncer setting {key:?} starts or ends with whitespace, which pgbouncer strips"
            ),
        );
    }
}

/// Storage settings in upstream's order: top-level fields first, then the `neon.*` GUCs.
pub(crate) fn resolve_storage(spec: &ComputeSpec) -> StorageSettings {
    let value = |name: &str| setting(spec, name).map(|(_, v)| v);
    let tenant_id = spec
        .tenant_id
        .or_else(|| value("neon.tenant_id").and_then(|v| v.parse().ok()));
    let timeline_id = spec
        .timeline_id
        .or_else(|| value("neon.timeline_id").and_then(|v| v.parse().ok()));
    let legacy = spec
        .pageserver_connstring
        .as_deref()
        .or_else(|| value("neon.pageserver_connstring"));
    let pageserver = spec.pageserver_connection_info.clone().or_else(|| {
        let connstrs: Vec<&str> = legacy?.split(',').map(str::trim).collect();
        let count = if connstrs.len() == 1 {
            0
        } else {
            u8::try_from(connstrs.len()).unwrap_or(u8::MAX)
        };
        let shards = connstrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let info = PageserverShardInfo {
                    pageservers: vec![PageserverShardConnectionInfo {
                        id: None,
                        libpq_url: Some((*c).to_owned()),
                        grpc_url: None,
                    }],
                };
                (format!("{:02x}{:02x}", i, count), info)
            })
            .collect();
        Some(PageserverConnectionInfo {
            shard_count: count,
            stripe_size: spec
                .shard_stripe_size
                .or_else(|| value("neon.stripe_size").and_then(|v| v.trim().parse().ok())),
            shards,
            prefer_protocol: PageserverProtocol::Libpq,
        })
    });
    let safekeepers = if !spec.safekeeper_connstrings.is_empty() {
        spec.safekeeper_connstrings.clone()
    } else if spec.mode.is_primary() {
        value("neon.safekeepers")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    StorageSettings {
        tenant_id,
        timeline_id,
        pageserver,
        safekeepers,
    }
}
