//! GraphQL errors: every [`GatewayError`] becomes an error with its code in `extensions.code` here, and only
//! here. Resolvers return [`ApiError`], which converts from `GatewayError` with its code; it deliberately has no
//! `Display`, so async-graphql's catch-all conversion (message only, no code) cannot be used by mistake.

use crate::error::GatewayError;
use async_graphql::{Error, ErrorExtensions};

/// The error type of resolvers.
#[derive(Debug, Clone)]
pub struct ApiError(pub Error);

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError(to_graphql(e))
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        e.0
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| {
        e.set("code", "INVALID_INPUT");
        e.set("field", field);
    })
}

/// Logs the cause with a reference and returns only the reference to the client.
pub fn internal(cause: impl std::fmt::Display) -> Error {
    let reference = uuid::Uuid::new_v4();
    tracing::error!(%reference, error = %cause, "internal error");
    coded("INTERNAL", format!("internal error (reference {reference})"))
}

/// The GraphQL error of a domain error: its message and code (and `field`, `retryAfterSecs`).
pub fn to_graphql(e: GatewayError) -> Error {
    let message = e.to_string();
    match e {
        GatewayError::Unauthenticated(_) => coded("UNAUTHENTICATED", message),
        GatewayError::Forbidden(_) => coded("FORBIDDEN", message),
        GatewayError::Invalid { field, .. } => invalid(field, message),
        GatewayError::UsernameTaken => coded("USERNAME_TAKEN", message),
        GatewayError::AccountPending(_) => coded("ACCOUNT_PENDING", message),
        GatewayError::AccountRefused(_) => coded("ACCOUNT_REFUSED", message),
        GatewayError::Unavailable(_) => coded("UNAVAILABLE", message),
        GatewayError::Overloaded(_) => coded("OVERLOADED", message),
        GatewayError::RateLimited { retry_after_secs, .. } => Error::new(message).extend_with(|_, e| {
            e.set("code", "RATE_LIMITED");
            e.set("retryAfterSecs", retry_after_secs.max(1));
        }),
        GatewayError::Internal(cause) => internal(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Value;

    fn ext(e: &Error, key: &str) -> Option<Value> {
        e.extensions.as_ref().and_then(|x| x.get(key)).cloned()
    }

    #[test]
    fn every_domain_error_keeps_its_code_and_message() {
        let cases = [
            (
                GatewayError::Unauthenticated("wrong username or password"),
                "UNAUTHENTICATED",
                "wrong username or password",
            ),
            (
                GatewayError::Forbidden("you may only read your own account"),
                "FORBIDDEN",
                "you may only read your own account",
            ),
            (GatewayError::invalid("to", "bad"), "INVALID_INPUT", "bad"),
            (GatewayError::UsernameTaken, "USERNAME_TAKEN", "that username is taken"),
            (GatewayError::AccountPending("no account yet"), "ACCOUNT_PENDING", "no account yet"),
            (
                GatewayError::AccountRefused("X: y".into()),
                "ACCOUNT_REFUSED",
                "the bank refused to open the account: X: y",
            ),
            (GatewayError::Unavailable("down"), "UNAVAILABLE", "down"),
            (
                GatewayError::RateLimited { what: "too many failed logins", retry_after_secs: 2 },
                "RATE_LIMITED",
                "too many failed logins; try again in 2 s",
            ),
        ];
        for (e, code, message) in cases {
            let g = to_graphql(e);
            assert_eq!(ext(&g, "code"), Some(Value::from(code)));
            assert_eq!(g.message, message);
        }
    }

    #[test]
    fn extras_travel_in_the_extensions() {
        assert_eq!(ext(&to_graphql(GatewayError::invalid("to", "bad")), "field"), Some(Value::from("to")));
        let limited = to_graphql(GatewayError::RateLimited { what: "too many failed logins", retry_after_secs: 2 });
        assert_eq!(ext(&limited, "retryAfterSecs"), Some(Value::from(2u64)));
        let limited = to_graphql(GatewayError::RateLimited { what: "too many failed logins", retry_after_secs: 0 });
        assert_eq!(ext(&limited, "retryAfterSecs"), Some(Value::from(1u64)), "never less than a second");
    }

    #[test]
    fn internal_errors_show_only_a_reference() {
        let e = to_graphql(GatewayError::internal("password authentication failed for user bank"));
        assert_eq!(ext(&e, "code"), Some(Value::from("INTERNAL")));
        assert!(e.message.starts_with("internal error (reference "), "{}", e.message);
        assert!(!e.message.contains("password"), "{}", e.message);
    }
}
