//! Schema extensions: a cap on the root fields of an operation, and one credential field per request.

use super::errors::coded;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, ServerResult, Variables};
use std::sync::Arc;

/// The mutations that run a password hash.
const CREDENTIAL_FIELDS: [&str; 2] = ["login", "register"];

/// Refuses, right after parsing, a document that selects more than `max_root_fields` root fields in one operation
/// (aliases, inline fragments and fragment spreads expanded), so one request cannot run hundreds of resolvers at
/// once against the database pool; and one that selects `login` or `register` more than once (aliases and
/// fragments included), so one request cannot buy hundreds of password hashes.
pub struct DocumentLimits {
    pub max_root_fields: usize,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentLimitsExtension(self.max_root_fields))
    }
}

struct DocumentLimitsExtension(usize);

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentLimitsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if most_root_fields(&document) > self.0 {
            return Err(coded("TOO_MANY_FIELDS", format!("at most {} root fields per operation", self.0))
                .into_server_error(Pos::default()));
        }
        if credential_fields(&document) > 1 {
            return Err(coded("TOO_MANY_CREDENTIALS", "at most one login or register per request")
                .into_server_error(Pos::default()));
        }
        Ok(document)
    }
}

/// Selections visited at most while counting root fields: fragments that spread others twice over can stand
/// for exponentially many fields, which are not worth counting one by one.
const MAX_STEPS: usize = 10_000;

/// The most root fields any one operation of the document selects, fragments expanded; `usize::MAX` when
/// counting them would take more than `MAX_STEPS` (a fragment cycle, which validation refuses later, ends there
/// too).
pub fn most_root_fields(document: &ExecutableDocument) -> usize {
    fn count(document: &ExecutableDocument, set: &SelectionSet, steps: &mut usize) -> Option<usize> {
        let mut fields = 0usize;
        for s in &set.items {
            *steps += 1;
            if *steps > MAX_STEPS {
                return None;
            }
            fields += match &s.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(f) => count(document, &f.node.selection_set.node, steps)?,
                Selection::FragmentSpread(f) => match document.fragments.get(&f.node.fragment_name.node) {
                    Some(fragment) => count(document, &fragment.node.selection_set.node, steps)?,
                    None => 0,
                },
            };
        }
        Some(fields)
    }
    let mut steps = 0;
    let mut most = 0;
    for (_, op) in document.operations.iter() {
        match count(document, &op.node.selection_set.node, &mut steps) {
            Some(n) => most = most.max(n),
            None => return usize::MAX,
        }
    }
    most
}

/// How many `login`/`register` fields the document selects, over all its operations and fragments.
pub fn credential_fields(document: &ExecutableDocument) -> usize {
    fn count(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|s| match &s.node {
                Selection::Field(f) => {
                    usize::from(CREDENTIAL_FIELDS.contains(&f.node.name.node.as_str()))
                        + count(&f.node.selection_set.node)
                }
                Selection::InlineFragment(f) => count(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let operations: usize = match &document.operations {
        DocumentOperations::Single(op) => count(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops.values().map(|op| count(&op.node.selection_set.node)).sum(),
    };
    operations + document.fragments.values().map(|f| count(&f.node.selection_set.node)).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliased_and_fragmented_credential_fields_are_all_counted() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        assert_eq!(credential_fields(&doc(r#"mutation { login(username: "a", password: "b") { token } }"#)), 1);
        assert_eq!(
            credential_fields(&doc(
                r#"mutation { a: login(username: "a", password: "b") { token } b: login(username: "a", password: "c") { token } }"#
            )),
            2
        );
        assert_eq!(
            credential_fields(&doc(
                r#"mutation { ...F ... on Mutation { register(username: "x", password: "y") { token } } }
                   fragment F on Mutation { login(username: "a", password: "b") { token } }"#
            )),
            2
        );
        assert_eq!(credential_fields(&doc("{ bankStats { accounts } }")), 0);
    }

    #[test]
    fn root_fields_count_aliases_and_fragments_and_survive_cycles() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        assert_eq!(most_root_fields(&doc("{ a: bankStats { accounts } b: bankStats { accounts } me { iban } }")), 3);
        assert_eq!(
            most_root_fields(&doc(
                "{ ...F ... on Query { x: me { iban } } } fragment F on Query { bankStats { accounts } y: me { iban } }"
            )),
            3
        );
        let cycle = doc("{ ...A } fragment A on Query { me { iban } ...B } fragment B on Query { ...A }");
        assert_eq!(most_root_fields(&cycle), usize::MAX, "a cycle ends, refused");
        // Thirty fragments that each spread the next twice: 2^30 fields, not counted one by one.
        let mut q = String::from("{ ...F0 }");
        for i in 0..30 {
            q.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
        }
        q.push_str(" fragment F30 on Query { me { iban } }");
        assert_eq!(most_root_fields(&doc(&q)), usize::MAX);
    }
}
