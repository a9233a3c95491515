//! The handlers of the HTTP API, one file per route; the bodies are `compute_spec::api` types.

pub(crate) mod check_writability;
pub(crate) mod configure;
pub(crate) mod database_schema;
pub(crate) mod dbs_and_roles;
pub(crate) mod extension_server;
pub(crate) mod extensions;
pub(crate) mod grants;
pub(crate) mod info;
pub(crate) mod insights;
pub(crate) mod metrics;
pub(crate) mod probes;
pub(crate) mod status;
pub(crate) mod terminate;
