//! Errors: why a spec cannot be planned ([`PlanError`]), why a statement failed
//! ([`OperationError`]), and why observing or applying could not proceed ([`ReconcileError`]).

use std::fmt;

/// One reason the planner refuses a spec that passed validation: something that depends on
/// the observed catalog or on the [`PlanOptions`](crate::PlanOptions). Each names the object
/// and where it is in the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanProblem {
    /// A database owner that is neither a spec role nor an existing role.
    #[error(
        "{pointer}: owner {owner:?} of database {database:?} is not a spec role and does not exist"
    )]
    UnknownOwner {
        /// The database.
        database: String,
        /// The owner named by the spec.
        owner: String,
        /// JSON pointer of the owner.
        pointer: String,
    },
    /// A membership (`IN ROLE`) in a role that is neither a spec role nor an existing role.
    #[error("{pointer}: role {role:?} is to be a member of {parent:?}, which does not exist")]
    UnknownParentRole {
        /// The member role.
        role: String,
        /// The role it is to be a member of.
        parent: String,
        /// JSON pointer of the option.
        pointer: String,
    },
    /// The spec contradicts the compute: it deletes the superuser or the privileged role.
    #[error("{pointer}: {message}")]
    Conflict {
        /// The role or database.
        object: String,
        /// JSON pointer of the offending entry.
        pointer: String,
        /// What contradicts what.
        message: String,
    },
}

impl PlanProblem {
    /// JSON pointer of the spec value the problem is about.
    pub fn pointer(&self) -> &str {
        match self {
            PlanProblem::UnknownOwner { pointer, .. }
            | PlanProblem::UnknownParentRole { pointer, .. }
            | PlanProblem::Conflict { pointer, .. } => pointer,
        }
    }
}

/// The planner refused the spec; nothing was planned, so nothing will change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    /// Every problem found, in spec order.
    pub problems: Vec<PlanProblem>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot plan the spec: {} problem(s)",
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// A statement PostgreSQL rejected, or could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {}{message}", sqlstate.as_deref().map(|s| format!("SQLSTATE {s}: ")).unwrap_or_default())]
pub struct OperationError {
    /// The role or database the statement acted on, e.g. `role "alice"`.
    pub object: String,
    /// The SQLSTATE, when the server answered with an error.
    pub sqlstate: Option<String>,
    /// The server's message (never contains the statement text), or the client error.
    pub message: String,
    /// Whether running again later may succeed without changing the spec.
    pub retryable: bool,
}

impl OperationError {
    /// Whether running again later may succeed without changing the spec.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub(crate) fn from_pg(object: String, e: &tokio_postgres::Error) -> OperationError {
        match e.as_db_error() {
            Some(db) => OperationError {
                object,
                sqlstate: Some(db.code().code().to_owned()),
                message: db.message().to_owned(),
                retryable: sqlstate_is_retryable(db.code().code()),
            },
            None => OperationError {
                object,
                sqlstate: None,
                message: chained(e),
                retryable: true,
            },
        }
    }
}

/// Classes and codes after which a later run may succeed unchanged: connection loss (08),
/// serialization failure and deadlock (40), resources (53), object in use or lock not available
/// (55006, 55P03), operator intervention (57P01–57P05), system errors (58).
pub fn sqlstate_is_retryable(code: &str) -> bool {
    matches!(&code[..2.min(code.len())], "08" | "40" | "53" | "58")
        || matches!(
            code,
            "55006" | "55P03" | "57P01" | "57P02" | "57P03" | "57P05"
        )
}

/// `e` and its sources, `: `-separated: how an error whose cause is its source (a client
/// error under [`ReconcileError::Connect`]) is logged or put into an [`OperationError`].
pub(crate) fn chained(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Observing, planning or applying could not proceed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// Could not connect to a database (the client error is the source: print the chain).
    #[error("connect to database {database:?}")]
    Connect {
        /// The database.
        database: String,
        /// The client error.
        source: tokio_postgres::Error,
    },
    /// The server did not answer the connection (socket, authentication, startup) in time.
    #[error("connect to database {database:?}: no answer within {after:?}")]
    ConnectTimedOut {
        /// The database.
        database: String,
        /// The bound.
        after: std::time::Duration,
    },
    /// The catalog query failed (the client error is the source: print the chain).
    #[error("observe the catalog of database {database:?}")]
    Observe {
        /// The database.
        database: String,
        /// The client error.
        source: tokio_postgres::Error,
    },
    /// The catalog query returned something unexpected.
    #[error("observe the catalog: unexpected answer: {0}")]
    CatalogFormat(String),
    /// The spec cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl ReconcileError {
    /// Whether running again later may succeed without changing the spec.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Connect { source, .. } | ReconcileError::Observe { source, .. } => {
                source
                    .as_db_error()
                    .is_none_or(|db| sqlstate_is_retryable(db.code().code()))
            }
            ReconcileError::ConnectTimedOut { .. } => true,
            ReconcileError::CatalogFormat(_) | ReconcileError::Plan(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and its sources, as a chain printer (anyhow's `{:#}`) shows them.
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        chained(e).split(": ").map(str::to_owned).collect()
    }

    /// A client error is the source of a connect error, not repeated in its message.
    #[test]
    fn a_connect_error_prints_its_cause_once() {
        let source = "port=notanumber"
            .parse::<tokio_postgres::Config>()
            .unwrap_err();
        let e = ReconcileError::Connect {
            database: "app".into(),
            source,
        };
        let parts = chain(&e);
        assert_eq!(parts[0], r#"connect to database "app""#);
        assert!(parts.len() >= 2, "{parts:?}");
        let text = parts.join(": ");
        for (i, part) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(part), "{part:?} twice in {text:?}");
        }
    }

    #[test]
    fn sqlstate_classification() {
        let check = |code: &str, retryable: bool| {
            assert_eq!(sqlstate_is_retryable(code), retryable, "{code}");
        };
        check("08006", true); // connection failure
        check("40P01", true); // deadlock
        check("53300", true); // too many connections
        check("55006", true); // database is being accessed by other users
        check("57P03", true); // cannot connect now (starting up)
        check("42710", false); // duplicate object
        check("2BP01", false); // dependent objects still exist
        check("42501", false); // insufficient privilege
        check("", false);
    }
}
