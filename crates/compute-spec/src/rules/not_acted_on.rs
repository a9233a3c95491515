//! Fields this workspace's compute_ctl accepts (they are part of upstream's format, so a spec
//! carrying them is valid) but does not act on: each present one is a warning naming the field,
//! so that `spec-check` and compute_ctl's start say what will not happen instead of ignoring it.
//!
//! The list is the single home of that knowledge; remove an entry in the same change that makes
//! compute_ctl act on the field. What compute_ctl acts on only under a command-line option
//! (remote extensions without `--remote-ext-base-url`, say) is warned about by compute_ctl at
//! start, since only it knows its options.

use super::Rules;
use crate::spec::ComputeSpec;
use crate::validate::codes;

/// Why upstream's local-file-cache features cannot be acted on here.
const LFC: &str = "it drives the local file cache of Neon's PostgreSQL (prewarm and offload), which compute_ctl does not manage";

/// Why the VM-only fields are not acted on.
const VM: &str = "it is acted on only inside a NeonVM (upstream needs --resize-swap-on-bind / --set-disk-quota-for-fs, which this compute_ctl refuses)";

/// Appends one `not-acted-on` warning per present field of `spec` that compute_ctl ignores.
pub(super) fn check(r: &mut Rules<'_>, spec: &ComputeSpec) {
    for (field, reason) in present_fields(spec) {
        r.warning(
            codes::NOT_ACTED_ON,
            &format!("/{field}"),
            format!("`{field}` is not acted on by this compute_ctl: {reason}"),
        );
    }
}

/// The present fields that compute_ctl does not act on, with the reason, in spec order.
fn present_fields(spec: &ComputeSpec) -> Vec<(&'static str, &'static str)> {
    let grpc = spec
        .pageserver_connection_info
        .as_ref()
        .is_some_and(|info| info.prefer_protocol == crate::spec::PageserverProtocol::Grpc);
    let candidates: [(&'static str, bool, &'static str); 10] = [
        ("swap_size_bytes", spec.swap_size_bytes.is_some(), VM),
        ("disk_quota_bytes", spec.disk_quota_bytes.is_some(), VM),
        (
            "disable_lfc_resizing",
            spec.disable_lfc_resizing.is_some(),
            "the local file cache is resized by Neon's vm-monitor, which this compute_ctl does not run",
        ),
        (
            "endpoint_storage_addr",
            spec.endpoint_storage_addr.is_some(),
            LFC,
        ),
        (
            "endpoint_storage_token",
            spec.endpoint_storage_token.is_some(),
            LFC,
        ),
        ("autoprewarm", spec.autoprewarm, LFC),
        (
            "offload_lfc_interval_seconds",
            spec.offload_lfc_interval_seconds.is_some(),
            LFC,
        ),
        (
            "pageserver_connection_info/prefer_protocol",
            grpc,
            "compute_ctl speaks libpq to the pageserver (each shard's libpq_url), not gRPC",
        ),
        (
            "startup_tracing_context",
            spec.startup_tracing_context.is_some(),
            "compute_ctl exports no OpenTelemetry traces",
        ),
        (
            "databricks_settings",
            spec.databricks_settings.is_some(),
            "Databricks-only settings are kept opaque",
        ),
    ];
    candidates
        .into_iter()
        .filter(|(_, present, _)| *present)
        .map(|(field, _, reason)| (field, reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> ComputeSpec {
        let mut value =
            serde_json::json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []}});
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_spec_without_such_fields_gets_no_warning() {
        assert!(present_fields(&spec(serde_json::json!({}))).is_empty());
    }

    #[test]
    fn each_present_field_is_named() {
        let fields = present_fields(&spec(serde_json::json!({
            "swap_size_bytes": 1, "disk_quota_bytes": 2, "disable_lfc_resizing": false,
            "endpoint_storage_addr": "h:1", "endpoint_storage_token": "t", "autoprewarm": true,
            "offload_lfc_interval_seconds": 5, "startup_tracing_context": {},
            "databricks_settings": {}
        })));
        let names: Vec<_> = fields.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            names,
            [
                "swap_size_bytes",
                "disk_quota_bytes",
                "disable_lfc_resizing",
                "endpoint_storage_addr",
                "endpoint_storage_token",
                "autoprewarm",
                "offload_lfc_interval_seconds",
                "startup_tracing_context",
                "databricks_settings"
            ]
        );
    }

    #[test]
    fn grpc_preference_is_reported_libpq_is_not() {
        let info = |protocol: &str| {
            serde_json::json!({"pageserver_connection_info": {"shard_count": 0, "prefer_protocol": protocol,
                "shards": {"0000": {"pageservers": [{"libpq_url": "postgres://p:6400"}]}}}})
        };
        assert_eq!(
            present_fields(&spec(info("grpc")))[0].0,
            "pageserver_connection_info/prefer_protocol"
        );
        assert!(present_fields(&spec(info("libpq"))).is_empty());
    }

    #[test]
    fn autoprewarm_false_is_not_reported() {
        assert!(present_fields(&spec(serde_json::json!({"autoprewarm": false}))).is_empty());
    }
}
