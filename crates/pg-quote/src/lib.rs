//! The one audited place that turns data into SQL or postgresql.conf text: identifiers,
//! literals, config values and dollar-quoted bodies. (Skeleton: filled by the config and
//! reconcile issue.)
