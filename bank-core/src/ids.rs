//! Identifiers. Command ids travel as Avro `fixed(16)` named `Uuid`.

use std::fmt;
use uuid::Uuid;

/// Identifies one command (account creation or money transfer) end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(Uuid);

impl CommandId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// Accepts the 16 bytes of an Avro `fixed(16)`; anything else is an error, never a panic.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| IdError::Length(bytes.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::Format)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for CommandId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id must be 16 bytes, got {0}")]
    Length(usize),
    #[error("id is not a uuid")]
    Format,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bytes_and_text() {
        let id = CommandId::new();
        assert_eq!(CommandId::from_slice(id.as_bytes()).unwrap(), id);
        assert_eq!(CommandId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(CommandId::from_slice(&[1, 2, 3]), Err(IdError::Length(3)));
        assert_eq!(CommandId::parse("not-a-uuid"), Err(IdError::Format));
    }
}
