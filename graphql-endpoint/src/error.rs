//! What the gateway's domain code refuses with. The schema layer maps each to a GraphQL error with a code in
//! `extensions.code` (see `schema::errors`); nothing below the schema knows about GraphQL.

/// A refusal or failure of the gateway's domain code.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No session, an unknown or ended one, or wrong credentials (`UNAUTHENTICATED`)
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Signed in, but not allowed (`FORBIDDEN`)
    #[error("{0}")]
    Forbidden(&'static str),
    /// An argument outside its rule (`INVALID_INPUT`, with `extensions.field`)
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// The user name is registered, or reserved (`USERNAME_TAKEN`)
    #[error("that username is taken")]
    UsernameTaken,
    /// The user's account is still being opened (`ACCOUNT_PENDING`)
    #[error("{0}")]
    AccountPending(&'static str),
    /// The bank refused to open the user's account (`ACCOUNT_REFUSED`)
    #[error("the bank refused to open the account: {0}")]
    AccountRefused(String),
    /// Kafka cannot be reached (`UNAVAILABLE`)
    #[error("{0}")]
    Unavailable(&'static str),
    /// Too many attempts of something, named by `what` (`RATE_LIMITED`, with `extensions.retryAfterSecs`)
    #[error("{what}; try again in {retry_after_secs} s")]
    RateLimited { what: &'static str, retry_after_secs: u64 },
    /// The gateway is at a limit of work in progress (`OVERLOADED`)
    #[error("{0}")]
    Overloaded(&'static str),
    /// Anything else: logged with a reference, and only the reference is shown (`INTERNAL`)
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<sqlx::Error> for GatewayError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

pub type GatewayResult<T> = Result<T, GatewayError>;
