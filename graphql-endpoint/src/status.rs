//! The status of a transfer a user asked for: one type for the table, the results channel and the GraphQL enum.

use sqlx::Postgres;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};

// Where a transfer stands: stored in `gateway.transfers.status` as its upper-case name, and the GraphQL enum
// `TransferStatus` (a plain comment, not a doc comment: the committed SDL has no description for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransferStatus {
    Confirmed,
    Failed,
    /// No answer within the wait; the result follows on `transferResults` and `transfer(id)`
    Pending,
}

impl TransferStatus {
    /// The decided status of a result.
    pub fn decided(confirmed: bool) -> Self {
        if confirmed { Self::Confirmed } else { Self::Failed }
    }

    /// The stored form (the column's CHECK constraint lists these).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Pending => "PENDING",
        }
    }

    /// The status of a stored form, `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Confirmed, Self::Failed, Self::Pending].into_iter().find(|st| st.as_str() == s)
    }
}

// Stored as TEXT: the column stays a plain text column with a CHECK, so no migration is needed.
impl sqlx::Type<Postgres> for TransferStatus {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for TransferStatus {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for TransferStatus {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for TransferStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Self::parse(s).ok_or_else(|| format!("not a transfer status: {s:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_form() {
        for st in [TransferStatus::Confirmed, TransferStatus::Failed, TransferStatus::Pending] {
            assert_eq!(TransferStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(TransferStatus::parse("confirmed"), None);
        assert_eq!(TransferStatus::decided(true), TransferStatus::Confirmed);
        assert_eq!(TransferStatus::decided(false), TransferStatus::Failed);
    }
}
