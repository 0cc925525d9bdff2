//! Compatibility levels and checks by real Avro schema resolution.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub const DEFAULT: Level = Level::Backward;

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Transitive levels check against every live version, the others against the latest only.
    pub fn is_transitive(self) -> bool {
        matches!(self, Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive)
    }

    fn backward(self) -> bool {
        matches!(self, Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive)
    }

    fn forward(self) -> bool {
        matches!(self, Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => Level::None,
            "BACKWARD" => Level::Backward,
            "BACKWARD_TRANSITIVE" => Level::BackwardTransitive,
            "FORWARD" => Level::Forward,
            "FORWARD_TRANSITIVE" => Level::ForwardTransitive,
            "FULL" => Level::Full,
            "FULL_TRANSITIVE" => Level::FullTransitive,
            _ => return Err(()),
        })
    }
}

/// Reasons `new` is incompatible with `existing` (newest last) at `level`; empty when compatible.
/// Only full resolvability counts: a partial match (e.g. an enum symbol the reader lacks) is incompatible.
pub fn check(level: Level, new: &Schema, existing: &[(i32, Schema)]) -> Vec<String> {
    let against: &[(i32, Schema)] =
        if level.is_transitive() { existing } else { existing.last().map(std::slice::from_ref).unwrap_or(&[]) };
    let mut problems = Vec::new();
    for (version, old) in against {
        if level.backward()
            && let Some(p) = can_read(old, new)
        {
            problems.push(format!("new schema cannot read data written with version {version}: {p}"));
        }
        if level.forward()
            && let Some(p) = can_read(new, old)
        {
            problems.push(format!("version {version} cannot read data written with the new schema: {p}"));
        }
    }
    problems
}

fn can_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => Some("only partially compatible (some values cannot be resolved)".to_owned()),
        Err(e) => Some(format!("{e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    #[test]
    fn adding_a_defaulted_field_is_backward_and_forward_compatible() {
        let v1 = s(r#"{"name":"a","type":"long"}"#);
        let v2 = s(r#"{"name":"a","type":"long"},{"name":"b","type":["null","string"],"default":null}"#);
        let existing = [(1, v1)];
        for level in [Level::Backward, Level::Forward, Level::Full, Level::FullTransitive] {
            assert!(check(level, &v2, &existing).is_empty(), "{level}");
        }
    }

    #[test]
    fn adding_a_required_field_breaks_backward_only() {
        let v1 = s(r#"{"name":"a","type":"long"}"#);
        let v2 = s(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        let existing = [(1, v1)];
        assert_eq!(check(Level::Backward, &v2, &existing).len(), 1);
        assert!(check(Level::Forward, &v2, &existing).is_empty());
        assert_eq!(check(Level::Full, &v2, &existing).len(), 1);
        assert!(check(Level::None, &v2, &existing).is_empty());
    }

    #[test]
    fn transitive_levels_check_every_version() {
        let v1 = s(r#"{"name":"a","type":"long"}"#);
        let v2 = s(r#"{"name":"a","type":"long"},{"name":"b","type":"string","default":"x"}"#);
        // v3 drops the default of b: fine against v2 (which has b) but not against v1.
        let v3 = s(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        let existing = [(1, v1), (2, v2)];
        assert!(check(Level::Backward, &v3, &existing).is_empty());
        assert_eq!(check(Level::BackwardTransitive, &v3, &existing).len(), 1);
    }

    #[test]
    fn parses_levels() {
        for l in ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]
        {
            assert_eq!(l.parse::<Level>().unwrap().as_str(), l);
        }
        assert!("SIDEWAYS".parse::<Level>().is_err());
    }
}
