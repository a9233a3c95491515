//! What the catalog routes (`/database_schema`, `/insights`, `/grants`, `/extensions`) share:
//! the checks on names a request carries, and the classification of what went wrong into an
//! HTTP status with the reason (the server's own message when PostgreSQL refused): 429 when
//! the catalog sessions stayed busy (`crate::catalog_sessions`), 503 when postgres did not
//! answer in time, both with `Retry-After`.

use axum::http::{StatusCode, header};
use axum::response::Response;
use tokio_postgres::error::SqlState;

use crate::catalog_sessions::SessionError;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes); longer ones are cut,
/// which could name another object, so they are refused instead.
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why a catalog request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// A name in the request cannot be a PostgreSQL name.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidName {
        /// The request field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why not.
        reason: &'static str,
    },
    /// The database, schema, role or extension named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object exists but cannot serve the request now (a database that refuses
    /// connections, an extension whose library is not preloaded).
    #[error("{0}")]
    Conflict(String),
    /// PostgreSQL refused the request's content (an invalid privilege for a schema, no update
    /// path between two versions, ...): its message.
    #[error("{0}")]
    Refused(String),
    /// No session: every slot stayed busy (429), or postgres did not give one in time (503).
    #[error(transparent)]
    Session(SessionError),
    /// A statement ran past `statement_timeout` or `lock_timeout`, or postgres is shutting
    /// down or starting (503): the server's message.
    #[error("postgres did not answer in time: {0}")]
    TimedOut(String),
    /// Anything else: a program that failed, an unexpected error.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl RequestError {
    /// The HTTP status that goes with it.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            RequestError::InvalidName { .. } | RequestError::Refused(_) => StatusCode::BAD_REQUEST,
            RequestError::NotFound(_) => StatusCode::NOT_FOUND,
            RequestError::Conflict(_) => StatusCode::CONFLICT,
            RequestError::Session(SessionError::Busy { .. }) => StatusCode::TOO_MANY_REQUESTS,
            RequestError::Session(SessionError::Unavailable(_) | SessionError::Refused(_))
            | RequestError::TimedOut(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer: [`Self::status`] with `{"error": message}`, and `Retry-After: 1` when
    /// trying again later may succeed (429, 503).
    pub(crate) fn response(&self, message: String) -> Response {
        let status = self.status();
        let mut response = crate::http::error(status, message);
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }

    /// Classifies an error of a statement or connection: PostgreSQL's "does not exist"
    /// errors are [`RequestError::NotFound`], a database not accepting connections
    /// [`RequestError::Conflict`], errors about the statement's data [`RequestError::Refused`]
    /// (each with the server's message), anything else internal.
    pub(crate) fn from_postgres(error: anyhow::Error) -> RequestError {
        let Some(db) = error
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
        else {
            return RequestError::Internal(error);
        };
        let message = db.message().to_owned();
        let code = db.code();
        if [
            SqlState::QUERY_CANCELED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
        {
            RequestError::TimedOut(message)
        } else if [
            SqlState::INVALID_CATALOG_NAME,
            SqlState::INVALID_SCHEMA_NAME,
            SqlState::UNDEFINED_OBJECT,
        ]
        .contains(code)
        {
            RequestError::NotFound(message)
        } else if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE {
            RequestError::Conflict(message)
        } else if ["22", "42", "0A", "0L"]
            .iter()
            .any(|class| code.code().starts_with(class))
        {
            RequestError::Refused(message)
        } else {
            RequestError::Internal(error)
        }
    }
}

impl From<SessionError> for RequestError {
    /// A connect the server answered with an error is classified as any statement's.
    fn from(error: SessionError) -> RequestError {
        match error {
            SessionError::Refused(e) => RequestError::from_postgres(e),
            other => RequestError::Session(other),
        }
    }
}

/// Checks that `value` (request field `field`) can be a PostgreSQL identifier as it is: not
/// empty, no NUL, at most [`MAX_IDENTIFIER_BYTES`] bytes.
pub(crate) fn check_identifier(field: &'static str, value: &str) -> Result<(), RequestError> {
    check_text(field, value)?;
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(RequestError::InvalidName {
            field,
            value: value.to_owned(),
            reason: "longer than 63 bytes (PostgreSQL would cut it)",
        });
    }
    Ok(())
}

/// Checks a text value (an extension version): not empty, no NUL.
pub(crate) fn check_text(field: &'static str, value: &str) -> Result<(), RequestError> {
    let reason = if value.is_empty() {
        "empty"
    } else if value.contains('\0') {
        "contains a NUL character"
    } else {
        return Ok(());
    };
    Err(RequestError::InvalidName {
        field,
        value: value.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_sql() {
        let check = |value: &str| {
            check_identifier("role", value)
                .map_err(|e| (e.status(), e.to_string()))
                .err()
        };
        assert_eq!(check("x"), None);
        assert_eq!(check(&"x".repeat(63)), None);
        assert_eq!(check("🐘 \"; DROP"), None);
        assert_eq!(
            check(""),
            Some((StatusCode::BAD_REQUEST, r#"invalid role "": empty"#.into()))
        );
        assert_eq!(
            check("a\0b"),
            Some((
                StatusCode::BAD_REQUEST,
                r#"invalid role "a\0b": contains a NUL character"#.into()
            ))
        );
        assert!(check(&"é".repeat(32)).unwrap().1.contains("longer than 63"));
        assert!(check_text("version", "1.0").is_ok());
        assert!(check_text("version", "").is_err());
    }

    #[test]
    fn errors_without_a_server_message_are_internal() {
        let e = RequestError::from_postgres(anyhow::anyhow!("connection refused"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "connection refused");
    }
}
