//! What root fields add to an operation's cost (see [`super::MAX_COMPLEXITY`]).

/// What a root field that reads one row or a cached value adds to its selection's cost.
pub const READ_COST: usize = 10;
/// What a root field that reads a page of rows adds, besides its rows.
pub const ROW_QUERY_COST: usize = 50;

/// The rows a list field with `first` may return (its default page when not given).
pub fn rows(first: Option<i32>) -> usize {
    usize::try_from(first.map_or(20, |n| n.clamp(1, crate::validate::MAX_PAGE))).unwrap_or(100)
}
