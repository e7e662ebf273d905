//! AvilaDB's errors, by what the caller can do about them; each maps to a platform code.

use avl_core::{Error, ErrorCode};

/// An AvilaDB error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A database, collection or document does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A database, collection or document already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// An `if_match` ETag did not match: nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// The input is malformed; the field says where.
    #[error("{field}: {reason}")]
    InvalidInput {
        /// Which input.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A document or batch is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// Stored data failed its checks.
    #[error("corrupted data: {0}")]
    Corrupted(String),
    /// The database file is of a format this build cannot read.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// The storage engine failed (I/O, a full disk).
    #[error("storage error: {0}")]
    Storage(String),
    /// The engine is closed or its writer stopped.
    #[error("{0}")]
    Unavailable(String),
    /// An error of the platform around the database (authentication, permissions, rate
    /// limits) that reached a client, code and all.
    #[error("{0}")]
    Platform(Error),
}

impl DbError {
    /// [`DbError::InvalidInput`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DbError::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The platform code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DbError::NotFound(_) => ErrorCode::NotFound,
            DbError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            DbError::Conflict(_) => ErrorCode::Conflict,
            DbError::InvalidInput { .. } => ErrorCode::InvalidInput,
            DbError::TooLarge(_) => ErrorCode::TooLarge,
            DbError::Corrupted(_) => ErrorCode::Corrupted,
            DbError::UnsupportedFormat(_) => ErrorCode::Corrupted,
            DbError::Storage(_) => ErrorCode::Internal,
            DbError::Unavailable(_) => ErrorCode::Unavailable,
            DbError::Platform(e) => e.code(),
        }
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Error {
        match e {
            DbError::InvalidInput { field, reason } => Error::invalid_input(field, reason),
            // The code says it; a client turns it back into the same variant.
            DbError::Corrupted(message) => Error::new(ErrorCode::Corrupted, message),
            DbError::Platform(e) => e,
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

impl From<Error> for DbError {
    /// A platform error (from a remote server) back in AvilaDB's terms.
    fn from(e: Error) -> DbError {
        // Where the variant says the code, the message goes without it (it would be shown
        // twice); where it does not, the code stays in the message.
        let plain = match e.request_id() {
            Some(id) => format!("{} (request {id})", e.message()),
            None => e.message().to_string(),
        };
        match e.code() {
            ErrorCode::NotFound => DbError::NotFound(plain),
            ErrorCode::AlreadyExists => DbError::AlreadyExists(plain),
            ErrorCode::Conflict => DbError::Conflict(plain),
            ErrorCode::InvalidInput => DbError::InvalidInput {
                field: e.field().unwrap_or("request").to_string(),
                reason: plain,
            },
            ErrorCode::TooLarge => DbError::TooLarge(plain),
            ErrorCode::Corrupted => DbError::Corrupted(plain),
            ErrorCode::Unavailable => DbError::Unavailable(plain),
            // Authentication, permissions, rate limits, a server's internal error: kept
            // whole, so the code goes on as it came.
            _ => DbError::Platform(e),
        }
    }
}

macro_rules! storage_errors {
    ($($t:ty),+) => {
        $(impl From<$t> for DbError {
            fn from(e: $t) -> DbError {
                DbError::Storage(e.to_string())
            }
        })+
    };
}

storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    std::io::Error
);

/// Result with [`DbError`].
pub type Result<T, E = DbError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_a_client_with_their_code_and_message_once() {
        for code in ErrorCode::ALL {
            let sent = if code == ErrorCode::InvalidInput {
                Error::invalid_input("field", "what is wrong")
            } else {
                Error::new(code, "what is wrong")
            };
            let db = DbError::from(sent.with_request_id("r1"));
            assert_eq!(db.code(), code);
            let text = db.to_string();
            assert_eq!(text.matches("what is wrong").count(), 1, "{text}");
            assert_eq!(
                text.matches(code.as_str()).count(),
                usize::from(matches!(db, DbError::Platform(_))),
                "{text}"
            );
            let back = Error::from(db);
            assert_eq!(back.code(), code);
            assert_eq!(back.to_string().matches(code.as_str()).count(), 1, "{back}");
            assert!(back.to_string().contains("what is wrong"), "{back}");
        }
    }
}
