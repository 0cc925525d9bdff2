//! The one Java check: Kafka 4 brokers need Java 17 or newer. `up` refuses an older one, `doctor` and the
//! prerequisites name the package that brings a new enough one.

use std::process::Command;

/// The oldest Java Kafka 4 runs on.
pub const MIN_MAJOR: u32 = 17;
/// The Debian package with a new enough Java.
pub const PACKAGE: &str = "openjdk-17-jre-headless";

/// What `java -version` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Java {
    /// No `java` on the PATH.
    Missing,
    /// A Java of this major version; `line` is what it printed first.
    Found { major: u32, line: String },
    /// `java` ran, but its version could not be read from this line.
    Unreadable(String),
}

impl Java {
    /// Why this Java cannot run Kafka, if it cannot (`None` when it can).
    pub fn problem(&self) -> Option<String> {
        match self {
            Self::Missing => Some(format!("java was not found; Kafka needs Java {MIN_MAJOR} or newer")),
            Self::Found { major, .. } if *major < MIN_MAJOR => {
                Some(format!("Java {major} found; Kafka needs Java {MIN_MAJOR} or newer"))
            }
            Self::Found { .. } => None,
            Self::Unreadable(line) => Some(format!("cannot read the Java version from `{line}`")),
        }
    }
}

/// Runs `java -version` (which prints to stderr).
pub fn installed() -> Java {
    let Ok(out) = Command::new("java").arg("-version").output() else { return Java::Missing };
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let line = crate::proc::plain(text.lines().next().unwrap_or("")).trim().to_owned();
    match major(&line) {
        Some(major) => Java::Found { major, line },
        None => Java::Unreadable(line),
    }
}

/// The major version in `java -version`'s first line (`openjdk version "17.0.9" …`, or `"1.8.0_392"` for 8).
pub fn major(first_line: &str) -> Option<u32> {
    let quoted = first_line.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '_', '-', '+']);
    match parts.next()?.parse::<u32>().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

/// Fails with the package to install unless the installed Java runs Kafka.
pub fn check() -> anyhow::Result<()> {
    match installed().problem() {
        Some(problem) => anyhow::bail!("{problem}: sudo apt-get install {PACKAGE}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_old_and_new_style_versions() {
        assert_eq!(major(r#"openjdk version "17.0.9" 2023-10-17"#), Some(17));
        assert_eq!(major(r#"openjdk version "21" 2023-09-19"#), Some(21));
        assert_eq!(major(r#"java version "1.8.0_392""#), Some(8));
        assert_eq!(major("no version here"), None);
    }

    #[test]
    fn names_what_keeps_kafka_from_running() {
        assert_eq!(Java::Found { major: 21, line: String::new() }.problem(), None);
        assert!(Java::Found { major: 11, line: String::new() }.problem().unwrap().contains("Java 11 found"));
        assert!(Java::Missing.problem().unwrap().contains("not found"));
    }
}
