//! Showing connection URLs without their secrets.

/// Replaces the password of a URL with `***` so it can be logged or printed.
pub fn redact_url(url: &str) -> String {
    // The password ends at the last `@`: a password holding `@`, `:` or `/` is still hidden whole.
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(
            redact_url("postgres://openbank:s3cret@localhost:5432/openbank"),
            "postgres://openbank:***@localhost:5432/openbank"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h"), "postgres://h");
        assert_eq!(redact_url("not a url"), "not a url");
        // A password holding `@`, `:` or `/` is hidden whole.
        assert_eq!(redact_url("postgres://u:p@s:s@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u:p/ss@h/db"), "postgres://u:***@h/db");
    }
}
