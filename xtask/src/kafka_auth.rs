//! The local Kafka's principals and their passwords: the super user `admin` and one per service
//! ([`bank_core::principals::PRINCIPALS`]), each generated once from the OS CSPRNG into
//! `.openbank/kafka/credentials/<name>` (0600). The storage is formatted with their SCRAM credentials; a
//! fingerprint of them beside the storage tells when it was formatted with others (or with none, before
//! authentication existed), and then the storage is made again.

use anyhow::bail;
use bank_core::kafka_wire::Credentials;
use bank_core::principals::{ADMIN, PRINCIPALS};
use sha2::{Digest, Sha256};

use crate::paths::Paths;

/// Every principal's name: the super user first.
pub fn names() -> Vec<&'static str> {
    std::iter::once(ADMIN).chain(PRINCIPALS.iter().map(|p| p.name)).collect()
}

/// The credentials of `name`, made when missing.
pub fn credentials(paths: &Paths, name: &str) -> anyhow::Result<Credentials> {
    let password = crate::paths::secret(paths, &format!("kafka/credentials/{name}"))?;
    Ok(Credentials { username: name.to_owned(), password })
}

/// Every principal's credentials, the super user first.
pub fn all(paths: &Paths) -> anyhow::Result<Vec<Credentials>> {
    names().into_iter().map(|n| credentials(paths, n)).collect()
}

/// What the storage was formatted with, without the passwords themselves.
pub fn fingerprint(all: &[Credentials]) -> String {
    let mut h = Sha256::new();
    for c in all {
        h.update(c.username.as_bytes());
        h.update([0]);
        h.update(c.password.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The super user's credentials for xtask's own probes: `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD` (or its
/// `_FILE`) when set (an external Kafka), else this checkout's `admin` file, else none (a Kafka without
/// authentication).
pub fn probe_credentials() -> Option<Credentials> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(username) = var("KAFKA_SASL_USERNAME") {
        let password = var("KAFKA_SASL_PASSWORD")
            .or_else(|| var("KAFKA_SASL_PASSWORD_FILE").and_then(|f| std::fs::read_to_string(f).ok()))
            .map(|p| p.trim_end().to_owned())
            .unwrap_or_default();
        return Some(Credentials { username, password });
    }
    let file = crate::paths::workspace_root().join(".openbank/kafka/credentials").join(ADMIN);
    let password = std::fs::read_to_string(file).ok()?.trim().to_owned();
    Some(Credentials { username: ADMIN.to_owned(), password })
}

/// `s` inside a JAAS double-quoted value, or an error for the characters that would end or escape it.
pub fn jaas_quoted(s: &str) -> anyhow::Result<&str> {
    if s.is_empty() || s.contains(['"', '\\', '\n', '\r', ';']) {
        bail!("a Kafka user name or password must be non-empty and free of quotes, backslashes, `;` and newlines");
    }
    Ok(s)
}

/// The `--add-scram` argument that gives `c` a SCRAM-SHA-256 credential at storage format.
pub fn add_scram(c: &Credentials) -> anyhow::Result<String> {
    if c.password.contains([',', ']', '=']) || c.username.contains([',', ']', '=']) {
        bail!("the credentials of {} cannot be written as --add-scram", c.username);
    }
    Ok(format!("SCRAM-SHA-256=[name={},password={}]", c.username, jaas_quoted(&c.password)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_gets_its_own_private_password_kept_across_calls() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("openbank-kafka-auth-{}", std::process::id()));
        let paths = Paths::at(&base);
        let first = all(&paths).unwrap();
        assert_eq!(first[0].username, ADMIN);
        assert_eq!(first.len(), PRINCIPALS.len() + 1);
        let mut passwords: Vec<&str> = first.iter().map(|c| c.password.as_str()).collect();
        passwords.sort_unstable();
        passwords.dedup();
        assert_eq!(passwords.len(), first.len(), "every principal has its own password");
        assert!(first.iter().all(|c| c.password.len() >= 32));
        assert_eq!(all(&paths).unwrap(), first);
        let file = base.join(".openbank/kafka/credentials/admin");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let dir = file.parent().unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        let print = fingerprint(&first);
        assert!(!first.iter().any(|c| print.contains(&c.password)));
        let mut other = first.clone();
        other[1].password.push('x');
        assert_ne!(fingerprint(&other), print);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn quotes_and_separators_are_refused() {
        assert!(jaas_quoted("ab\"c").is_err() && jaas_quoted("a;b").is_err() && jaas_quoted("").is_err());
        let c = Credentials { username: "heartbeat".into(), password: "0a1b".into() };
        assert_eq!(add_scram(&c).unwrap(), "SCRAM-SHA-256=[name=heartbeat,password=0a1b]");
        assert!(add_scram(&Credentials { username: "x".into(), password: "a,b".into() }).is_err());
    }
}
