//! [`ServiceError`]: why a request was refused or failed, in terms every front can render: a
//! code from the closed set, a message for people, and when to try again where that is
//! known. A front maps it to its wire (an error line on the socket, a status and problem
//! details over HTTP); nothing here knows either.

use crate::domain::ErrorCode;
use crate::premium::PremiumError;
use crate::protocol::ErrorBody;
use crate::store::StoreError;
use std::time::Duration;

/// Why a request was refused or failed. A refused request changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
    /// When the same request may succeed (rate limited, busy, unavailable), if known.
    pub retry_after: Option<Duration>,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_allowed(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorCode::NotAllowed, message)
    }

    pub fn internal(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorCode::Internal, message)
    }

    pub fn retry_after(mut self, after: Duration) -> ServiceError {
        self.retry_after = Some(after);
        self
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        ServiceError::new(error.code(), error.to_string())
    }
}

impl From<PremiumError> for ServiceError {
    fn from(error: PremiumError) -> ServiceError {
        ServiceError::new(error.code, error.message)
    }
}

impl From<ErrorBody> for ServiceError {
    fn from(error: ErrorBody) -> ServiceError {
        ServiceError::new(error.code, error.message)
    }
}

impl From<&ServiceError> for ErrorBody {
    fn from(error: &ServiceError) -> ErrorBody {
        ErrorBody::new(error.code, error.message.clone())
    }
}
