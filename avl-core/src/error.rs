//! The one error taxonomy of the platform.
//!
//! Every crate has its own error enum and converts it into [`Error`]; the [`ErrorCode`]
//! strings and their HTTP statuses are the public contract of every endpoint and CLI
//! message, and never change meaning.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable class of an error: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The named thing does not exist.
    NotFound,
    /// Something with that name or key already exists.
    AlreadyExists,
    /// A precondition failed: an ETag did not match, or a transaction read changed data.
    Conflict,
    /// The request is malformed or a field is out of range; the message says which.
    InvalidInput,
    /// The request, or something in it, is larger than allowed.
    TooLarge,
    /// The caller did not prove who it is (missing, wrong or expired credentials).
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// Too many requests; retry later.
    RateLimited,
    /// The service cannot take the request now (starting, shutting down, overloaded,
    /// or unreachable); retrying may work.
    Unavailable,
    /// Stored data failed a check; it was not returned.
    Corrupted,
    /// A bug or an unexpected failure on the serving side.
    Internal,
}

impl ErrorCode {
    /// Every code, in a fixed order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Conflict,
        ErrorCode::InvalidInput,
        ErrorCode::TooLarge,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Corrupted,
        ErrorCode::Internal,
    ];

    /// The stable string form, e.g. `"NotFound"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "NotFound",
            ErrorCode::AlreadyExists => "AlreadyExists",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::InvalidInput => "InvalidInput",
            ErrorCode::TooLarge => "TooLarge",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::RateLimited => "RateLimited",
            ErrorCode::Unavailable => "Unavailable",
            ErrorCode::Corrupted => "Corrupted",
            ErrorCode::Internal => "Internal",
        }
    }

    /// The HTTP status every endpoint answers this code with.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists => 409,
            ErrorCode::Conflict => 412,
            ErrorCode::InvalidInput => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Corrupted => 500,
            ErrorCode::Internal => 500,
        }
    }

    /// The code for a stable string, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether retrying the same request later may succeed.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform error: a stable [`ErrorCode`], a message a person can act on, the field at
/// fault for [`ErrorCode::InvalidInput`], and the request id when it crossed a network.
///
/// ```
/// use avl_core::{Error, ErrorCode};
/// let e = Error::invalid_input("partition_key", "must start with '/'");
/// assert_eq!(e.code(), ErrorCode::InvalidInput);
/// assert_eq!(e.code().http_status(), 400);
/// assert_eq!(e.to_string(), "InvalidInput: partition_key: must start with '/'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    code: ErrorCode,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            field: None,
            request_id: None,
        }
    }

    /// [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// [`ErrorCode::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }

    /// [`ErrorCode::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// [`ErrorCode::InvalidInput`] naming the field at fault and why.
    pub fn invalid_input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::InvalidInput, reason);
        e.field = Some(field.into());
        e
    }

    /// [`ErrorCode::TooLarge`].
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    /// [`ErrorCode::Unauthenticated`].
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// [`ErrorCode::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// [`ErrorCode::RateLimited`].
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RateLimited, message)
    }

    /// [`ErrorCode::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// [`ErrorCode::Corrupted`].
    pub fn corrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Corrupted, message)
    }

    /// [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message, without code or field.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, for [`ErrorCode::InvalidInput`].
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The id of the served request that failed, when it came over the network.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// This error, tagged with the request id it answered.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// This error with `context: ` put in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    /// I/O failures are the serving side's problem unless the kind says otherwise.
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let code = match e.kind() {
            K::NotFound => ErrorCode::NotFound,
            K::AlreadyExists => ErrorCode::AlreadyExists,
            K::PermissionDenied => ErrorCode::Forbidden,
            K::InvalidInput => ErrorCode::InvalidInput,
            K::InvalidData => ErrorCode::Corrupted,
            K::TimedOut | K::ConnectionRefused | K::ConnectionReset | K::Interrupted => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Internal,
        };
        Error::new(code, e.to_string())
    }
}

/// Result with the platform [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_statuses_are_stable() {
        let expected = [
            ("NotFound", 404),
            ("AlreadyExists", 409),
            ("Conflict", 412),
            ("InvalidInput", 400),
            ("TooLarge", 413),
            ("Unauthenticated", 401),
            ("Forbidden", 403),
            ("RateLimited", 429),
            ("Unavailable", 503),
            ("Corrupted", 500),
            ("Internal", 500),
        ];
        for (code, (name, status)) in ErrorCode::ALL.into_iter().zip(expected) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.http_status(), status);
            assert_eq!(ErrorCode::parse(name), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{name}\""));
        }
        assert_eq!(ErrorCode::parse("Nope"), None);
    }

    #[test]
    fn error_json_shape() {
        let e = Error::invalid_input("name", "too long").with_request_id("r1");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "InvalidInput", "message": "too long", "field": "name", "request_id": "r1"})
        );
        let back: Error = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        let plain = serde_json::to_value(Error::not_found("no such collection")).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"code": "NotFound", "message": "no such collection"})
        );
    }
}
