//! Schema extensions: one credential field per operation.

use super::errors::coded;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, ServerResult, Variables};
use std::sync::Arc;

/// The mutations that run a password hash.
const CREDENTIAL_FIELDS: [&str; 2] = ["login", "register"];

/// Refuses a document that selects `login` or `register` more than once (aliases and fragments included), so
/// one request cannot buy hundreds of password hashes.
pub struct OneCredentialField;

impl ExtensionFactory for OneCredentialField {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OneCredentialFieldExtension)
    }
}

struct OneCredentialFieldExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for OneCredentialFieldExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if credential_fields(&document) > 1 {
            return Err(coded("TOO_MANY_CREDENTIALS", "at most one login or register per request")
                .into_server_error(Pos::default()));
        }
        Ok(document)
    }
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
}
