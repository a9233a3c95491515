//! Obtaining the spec and compute_ctl's own config at start: inline JSON, a spec file, a
//! ComputeConfig file, or the control plane (`status: empty` means: wait for `/configure`).

use anyhow::{Context, bail};
use compute_spec::{
    ComputeCtlConfig, ComputeSpec, ControlPlaneComputeStatus, ControlPlaneConfigResponse,
    ValidatedSpec, ValidationOptions, ValidationReport,
};

use crate::cli::{Options, SpecSource};

/// What the start-up source said.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The spec, or `None`: start empty.
    pub(crate) spec: Option<ValidatedSpec>,
    /// Settings of compute_ctl (JWK set).
    pub(crate) ctl: ComputeCtlConfig,
}

/// The validation options of this compute: the default provided roles plus the privileged
/// role, which compute_ctl itself provides, and its admin path from `--connstr`: the user it
/// connects as (a provided role whose login a spec must not change, whether it logs in with a
/// password) and the database it connects to (a system database).
pub(crate) fn validation_options(opts: &Options) -> ValidationOptions {
    let mut options = ValidationOptions::default();
    if let Some(user) = opts.pg_config.get_user() {
        options = options.with_admin_user(user);
    }
    if let Some(db) = opts.pg_config.get_dbname() {
        options = options.with_admin_database(db);
    }
    options.admin_password_login = opts.pg_config.get_password().is_some();
    options.with_provided_role(&opts.privileged_role_name)
}

/// How compute_ctl accepts a spec document (either shape): compute-spec's validation, which
/// includes the option allow-lists, so that a spec the reconciler would refuse half-way
/// through a start is refused before anything changes. Every finding is located.
pub(crate) fn accept_json(
    text: &str,
    options: &ValidationOptions,
) -> Result<ValidatedSpec, ValidationReport> {
    ValidatedSpec::from_json_with(text, options)
}

/// [`accept_json`] for a spec that arrived already parsed (from the control plane).
pub(crate) fn accept_spec(
    spec: ComputeSpec,
    options: &ValidationOptions,
) -> Result<ValidatedSpec, ValidationReport> {
    ValidatedSpec::from_spec_with(spec, options)
}

/// Says what compute_ctl will not do with an accepted spec, each time one is accepted (at
/// start, from `empty`, at `/configure`): every validation warning (unknown fields, fields
/// not acted on, …) as a WARN line naming its pointer and code, and the fields this process
/// acts on only under a command-line option it was not given. The spec's identity
/// (`cluster_id`, `name`, `state`, `operation_uuid`, `timestamp`: descriptive fields) is
/// logged once at INFO.
pub(crate) fn report_accepted(spec: &ValidatedSpec, opts: &Options) {
    let s = spec.spec();
    tracing::info!(
        cluster_id = s.cluster.cluster_id.as_deref(),
        name = s.cluster.name.as_deref(),
        state = s.cluster.state.as_deref(),
        operation_uuid = s.operation_uuid.as_deref(),
        timestamp = s.timestamp.as_deref(),
        mode = s.mode.as_guc_value(),
        "spec accepted"
    );
    for warning in spec.warnings() {
        tracing::warn!(
            pointer = warning.pointer.as_str(),
            code = warning.code,
            "spec: {}",
            warning.message
        );
    }
    if s.remote_extensions.is_some() && opts.remote_ext_base_url.is_none() {
        tracing::warn!(
            pointer = "/remote_extensions",
            code = compute_spec::codes::NOT_ACTED_ON,
            "spec: `remote_extensions` is not acted on: compute_ctl was started without --remote-ext-base-url"
        );
    }
}

/// A start-up source that gave no usable spec. `ctl` is compute_ctl's own config when that
/// much could be read (an invalid spec in a good wrapper): its keys still guard the API that
/// reports the failure.
#[derive(Debug)]
pub(crate) struct LoadError {
    /// compute_ctl's config, if it was read.
    pub(crate) ctl: Option<ComputeCtlConfig>,
    /// Why there is no spec.
    pub(crate) error: anyhow::Error,
}

impl From<anyhow::Error> for LoadError {
    fn from(error: anyhow::Error) -> LoadError {
        LoadError { ctl: None, error }
    }
}

/// Parses a document of either shape: a wrapper with `spec: null` yields no spec.
pub(crate) fn parse_document(
    text: &str,
    origin: &str,
    options: &ValidationOptions,
) -> Result<Loaded, LoadError> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("parse {origin}"))?;
    let (has_spec, ctl) = match &value {
        serde_json::Value::Object(obj) if compute_spec::SpecDocument::is_wrapper(obj) => {
            let ctl = match obj.get("compute_ctl_config") {
                Some(v) => serde_json::from_value(v.clone())
                    .with_context(|| format!("parse {origin}: /compute_ctl_config"))?,
                None => ComputeCtlConfig::default(),
            };
            (obj.get("spec").is_some_and(|s| !s.is_null()), ctl)
        }
        _ => (true, ComputeCtlConfig::default()),
    };
    let spec = if has_spec {
        let accepted = accept_json(text, options).map_err(|report| {
            let lines: Vec<String> = report
                .diagnostics
                .iter()
                .map(|d| {
                    format!(
                        "{} [{}]: {}",
                        if d.pointer.is_empty() {
                            "/"
                        } else {
                            &d.pointer
                        },
                        d.code,
                        d.message
                    )
                })
                .collect();
            anyhow::anyhow!("invalid spec in {origin}: {}", lines.join("; "))
        });
        match accepted {
            Ok(spec) => Some(spec),
            Err(error) => {
                return Err(LoadError {
                    ctl: Some(ctl),
                    error,
                });
            }
        }
    } else {
        None
    };
    Ok(Loaded { spec, ctl })
}

/// Whether a spec holds a secret: the storage token or a role's password hash.
fn has_secrets(spec: &ValidatedSpec) -> bool {
    let s = spec.spec();
    s.storage_auth_token.is_some()
        || s.cluster
            .roles
            .iter()
            .any(|r| r.encrypted_password.is_some())
}

/// Loads from the source named on the command line.
pub(crate) async fn load(opts: &Options) -> Result<Loaded, LoadError> {
    match &opts.spec_source {
        SpecSource::Inline(json) => {
            let loaded = parse_document(json, "--spec", &validation_options(opts))?;
            if loaded.spec.as_ref().is_some_and(has_secrets) {
                tracing::warn!(
                    "the spec given with -s/--spec holds secrets (a storage token or password hashes), \
                     which every local user can read in /proc/<pid>/cmdline; pass it with -S FILE \
                     (mode 0600) or -S /dev/stdin instead"
                );
            }
            Ok(loaded)
        }
        SpecSource::File(path) | SpecSource::ConfigFile(path) => {
            let options = validation_options(opts);
            let text = crate::spec_file::read_spec_file(path, options.max_bytes)
                .await
                .map_err(anyhow::Error::from)?;
            parse_document(&text, &path.display().to_string(), &options)
        }
        SpecSource::ControlPlane {
            base_url,
            compute_id,
        } => Ok(fetch_from_control_plane(base_url, compute_id, opts).await?),
        SpecSource::None => Ok(Loaded::default()),
    }
}

/// The spec from the control plane (`control_plane::fetch_config`), accepted as every spec
/// is.
async fn fetch_from_control_plane(
    base_url: &str,
    compute_id: &str,
    opts: &Options,
) -> anyhow::Result<Loaded> {
    let token = std::env::var("NEON_CONTROL_PLANE_TOKEN").ok();
    let timeouts = crate::control_plane::Timeouts {
        connect: opts.control_plane_connect_timeout,
        request: opts.control_plane_timeout,
    };
    let parsed =
        crate::control_plane::fetch_config(base_url, compute_id, token.as_deref(), timeouts)
            .await?;
    loaded_from(parsed, &validation_options(opts))
}

/// What the control plane's answer means: `empty` (start empty), or `attached` with a spec,
/// accepted as every spec is.
fn loaded_from(
    parsed: ControlPlaneConfigResponse,
    options: &ValidationOptions,
) -> anyhow::Result<Loaded> {
    match (parsed.status, parsed.spec) {
        (ControlPlaneComputeStatus::Empty, _) => Ok(Loaded {
            spec: None,
            ctl: parsed.compute_ctl_config,
        }),
        (ControlPlaneComputeStatus::Attached, None) => {
            bail!("control plane says attached but sends no spec")
        }
        (ControlPlaneComputeStatus::Attached, Some(spec)) => {
            let spec = accept_spec(spec, options)
                .map_err(|r| anyhow::anyhow!("invalid spec from control plane: {r}"))?;
            Ok(Loaded {
                spec: Some(spec),
                ctl: parsed.compute_ctl_config,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_for(connstr: &str) -> ValidationOptions {
        use clap::Parser;
        let argv = ["compute_ctl", "-D", "/x", "-C", connstr, "-b", "/p"];
        validation_options(&crate::cli::Cli::parse_from(argv).into_options().unwrap())
    }

    /// The admin path comes from `-C`: a spec may not make its user NOLOGIN, rename onto it,
    /// or delete its database; its password only when `-C` logs in with one.
    #[test]
    fn the_admin_path_is_the_connection_of_connstr() {
        let spec = |user: &str, db: &str| {
            format!(
                r#"{{"format_version": 1.0, "cluster": {{"roles": [{{"name": "{user}",
                   "encrypted_password": "md5b2ad3f0a1c4e3e8e0d0f4c8ac2a1d9e7"}}], "databases": []}},
                   "delta_operations": [{{"action": "rename_role", "name": "x", "new_name": "{user}"}},
                                        {{"action": "delete_db", "name": "{db}"}}]}}"#
            )
        };
        let errors = |connstr: &str, user: &str, db: &str| -> Vec<(&'static str, String)> {
            accept_json(&spec(user, db), &options_for(connstr))
                .map(|_| Vec::new())
                .unwrap_or_else(|report| {
                    report
                        .diagnostics
                        .into_iter()
                        .filter(|d| d.severity == compute_spec::Severity::Error)
                        .map(|d| (d.code, d.pointer))
                        .collect()
                })
        };
        use compute_spec::codes::{ADMIN_ROLE_CHANGED, DELTA_PROVIDED_ROLE, SYSTEM_DATABASE};
        let refused = |password: bool| {
            let mut all = vec![
                (
                    DELTA_PROVIDED_ROLE,
                    "/delta_operations/0/new_name".to_owned(),
                ),
                (SYSTEM_DATABASE, "/delta_operations/1/name".to_owned()),
            ];
            if password {
                all.insert(
                    0,
                    (
                        ADMIN_ROLE_CHANGED,
                        "/cluster/roles/0/encrypted_password".into(),
                    ),
                );
            }
            all
        };
        let connstr = "postgresql://web_admin@127.0.0.1/app_db";
        assert_eq!(errors(connstr, "web_admin", "app_db"), refused(false));
        let connstr = "postgresql://web_admin:secret@127.0.0.1/app_db";
        assert_eq!(errors(connstr, "web_admin", "app_db"), refused(true));
        // Another user's password and database are the spec's business.
        let errors_other = errors(connstr, "someone", "other_db");
        assert!(errors_other.is_empty(), "{errors_other:?}");
    }

    /// A spec the reconciler would refuse half-way is refused whole, located, in either shape;
    /// the connstr user and the privileged role count as provided roles.
    #[test]
    fn acceptance_includes_the_reconcile_allow_list() {
        let bare = r#"{"format_version": 1.0, "cluster": {"roles": [
  {"name": "a", "options": [{"name": "SUPERUSER", "vartype": "bool"}]}],
  "databases": [{"name": "d", "owner": "web_admin"}]}}"#;
        let options = ValidationOptions::default().with_provided_role("web_admin");
        let report = accept_json(bare, &options).unwrap_err();
        let found: Vec<_> = report
            .diagnostics
            .iter()
            .map(|d| (d.code, d.pointer.as_str(), d.location.map(|l| l.line)))
            .collect();
        assert_eq!(
            found,
            [(
                compute_spec::codes::OPTION_NOT_ALLOWED,
                "/cluster/roles/0/options/0",
                Some(2)
            )]
        );
        let wrapped =
            format!(r#"{{"spec": {bare}, "compute_ctl_config": {{"jwks": {{"keys": []}}}}}}"#);
        let report = accept_json(&wrapped, &options).unwrap_err();
        assert_eq!(
            report.diagnostics[0].pointer,
            "/spec/cluster/roles/0/options/0"
        );
        // Without the provided role, the owner is unknown too.
        let report = accept_json(bare, &ValidationOptions::default()).unwrap_err();
        assert_eq!(report.diagnostics.len(), 2);
        let spec: ComputeSpec = serde_json::from_str(bare).unwrap();
        assert!(accept_spec(spec, &options).is_err());
    }

    #[test]
    fn documents_of_both_shapes() {
        let bare = r#"{"format_version":1.0,"cluster":{"roles":[],"databases":[]}}"#;
        assert!(
            parse_document(bare, "t", &ValidationOptions::default())
                .unwrap()
                .spec
                .is_some()
        );
        let empty = r#"{"spec":null,"compute_ctl_config":{"jwks":{"keys":[{"kty":"OKP"}]}}}"#;
        let loaded = parse_document(empty, "t", &ValidationOptions::default()).unwrap();
        assert!(loaded.spec.is_none());
        assert_eq!(loaded.ctl.jwks.keys.len(), 1);
        let wrapped = format!(r#"{{"spec":{bare},"compute_ctl_config":{{"jwks":{{"keys":[]}}}}}}"#);
        assert!(
            parse_document(&wrapped, "t", &ValidationOptions::default())
                .unwrap()
                .spec
                .is_some()
        );
        let err = parse_document(
            "{\n  \"format_version\": 1.0,\n  \"cluster\": 5\n}",
            "spec.json",
            &ValidationOptions::default(),
        )
        .unwrap_err();
        let text = format!("{:#}", err.error);
        assert!(text.contains("invalid spec in spec.json"), "{text}");
        assert!(
            err.ctl.is_some(),
            "a bare spec comes with the default config"
        );
        let err = parse_document("{", "spec.json", &ValidationOptions::default()).unwrap_err();
        assert!(format!("{:#}", err.error).contains("line 1 column 1"));
        assert!(err.ctl.is_none(), "nothing could be read");
        // An invalid spec in a good wrapper: compute_ctl's own config is still known.
        let wrapped = r#"{"spec": {"format_version": 1.0, "cluster": 5},
            "compute_ctl_config": {"jwks": {"keys": [{"kty": "OKP"}]}}}"#;
        let err = parse_document(wrapped, "c.json", &ValidationOptions::default()).unwrap_err();
        assert_eq!(err.ctl.unwrap().jwks.keys.len(), 1);
    }
}
