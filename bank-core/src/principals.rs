//! Who may do what on Kafka. Each service authenticates as its own principal (SASL/SCRAM-SHA-256) and the broker
//! allows it only what this table lists: the topics it reads and writes and its consumer groups. Everything else
//! is refused (`allow.everyone.if.no.acl.found=false`). [`ADMIN`] is the super user: the synchronizer (which
//! creates topics and these ACLs), the tests and the operator's tools (load test, audit, kcat).
//!
//! Read and Write imply Describe in Kafka's authorizer, so Describe is listed only where nothing else is.

use crate::kafka_wire::{Acl, Operation, Pattern, Resource};
use crate::topics::{
    ACCOUNT_CREATION_CONFIRMED, ACCOUNT_CREATION_CONFIRMED_MANUAL, ACCOUNT_CREATION_FAILED, BALANCE_CHANGED,
    CONFIRM_ACCOUNT_CREATION, CONFIRM_MONEY_TRANSFER, DEAD_LETTERS, HEARTBEAT, MONEY_TRANSFER_CONFIRMED,
    MONEY_TRANSFER_FAILED,
};

/// The super user.
pub const ADMIN: &str = "admin";

/// One service's principal and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The SCRAM user name: the service's name.
    pub name: &'static str,
    pub reads: &'static [&'static str],
    pub writes: &'static [&'static str],
    /// Topics it may only describe (offsets and metadata, never a record).
    pub describes: &'static [&'static str],
    /// Prefixes of the consumer groups it joins (its name; the topic prefix goes in front).
    pub groups: &'static [&'static str],
    /// Prefixes of other services' groups whose committed offsets it may read.
    pub describes_groups: &'static [&'static str],
}

const RESULTS: [&str; 6] = [
    ACCOUNT_CREATION_CONFIRMED,
    ACCOUNT_CREATION_CONFIRMED_MANUAL,
    ACCOUNT_CREATION_FAILED,
    MONEY_TRANSFER_CONFIRMED,
    MONEY_TRANSFER_FAILED,
    BALANCE_CHANGED,
];

/// Every service that talks to Kafka, but the synchronizer (it provisions, as [`ADMIN`]).
pub const PRINCIPALS: &[Principal] = &[
    Principal {
        name: "heartbeat",
        reads: &[],
        writes: &[HEARTBEAT],
        describes: &[],
        groups: &[],
        describes_groups: &[],
    },
    Principal {
        name: "command-generator",
        // Only AUTO confirmations: registered users' tokens are on ACCOUNT_CREATION_CONFIRMED_MANUAL.
        reads: &[HEARTBEAT, ACCOUNT_CREATION_CONFIRMED],
        writes: &[CONFIRM_ACCOUNT_CREATION, CONFIRM_MONEY_TRANSFER],
        describes: &[],
        groups: &["command-generator"],
        describes_groups: &[],
    },
    Principal {
        name: "command-handler",
        reads: &[CONFIRM_ACCOUNT_CREATION, CONFIRM_MONEY_TRANSFER],
        writes: &[
            ACCOUNT_CREATION_CONFIRMED,
            ACCOUNT_CREATION_CONFIRMED_MANUAL,
            ACCOUNT_CREATION_FAILED,
            MONEY_TRANSFER_CONFIRMED,
            MONEY_TRANSFER_FAILED,
            BALANCE_CHANGED,
            DEAD_LETTERS,
        ],
        describes: &[],
        groups: &["command-handler"],
        describes_groups: &[],
    },
    Principal {
        name: "graphql-endpoint",
        reads: &RESULTS,
        writes: &[CONFIRM_ACCOUNT_CREATION, CONFIRM_MONEY_TRANSFER, DEAD_LETTERS],
        // The pipeline view: how far the generator is behind on the heartbeat.
        describes: &[HEARTBEAT],
        groups: &["graphql-endpoint"],
        describes_groups: &["command-generator", "command-handler"],
    },
];

/// The principal of `service`, if it has one.
pub fn principal(service: &str) -> Option<&'static Principal> {
    PRINCIPALS.iter().find(|p| p.name == service)
}

/// Every ACL of every principal, for topics and groups under `prefix` (empty in normal use).
pub fn acls(prefix: &str) -> Vec<Acl> {
    let mut out = Vec::new();
    for p in PRINCIPALS {
        let mut add = |resource, pattern, name: &str, operation| {
            out.push(Acl {
                principal: p.name.to_owned(),
                resource,
                pattern,
                name: format!("{prefix}{name}"),
                operation,
            });
        };
        for t in p.reads {
            add(Resource::Topic, Pattern::Literal, t, Operation::Read);
        }
        for t in p.writes {
            add(Resource::Topic, Pattern::Literal, t, Operation::Write);
        }
        for t in p.describes {
            add(Resource::Topic, Pattern::Literal, t, Operation::Describe);
        }
        for g in p.groups {
            add(Resource::Group, Pattern::Prefixed, g, Operation::Read);
        }
        for g in p.describes_groups {
            add(Resource::Group, Pattern::Prefixed, g, Operation::Describe);
        }
    }
    out.sort();
    out
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use super::*;
    use crate::topics::TOPICS;

    fn allowed(principal: &str, op: Operation, topic: &str) -> bool {
        acls("")
            .iter()
            .any(|a| a.principal == principal && a.resource == Resource::Topic && a.name == topic && a.operation == op)
    }

    #[test]
    fn registered_users_tokens_are_read_by_the_gateway_alone() {
        let readers: Vec<&str> = PRINCIPALS
            .iter()
            .filter(|p| allowed(p.name, Operation::Read, ACCOUNT_CREATION_CONFIRMED_MANUAL))
            .map(|p| p.name)
            .collect();
        assert_eq!(readers, ["graphql-endpoint"]);
        // Commands carry the debited account's token: only the handler reads them.
        for topic in [CONFIRM_MONEY_TRANSFER, CONFIRM_ACCOUNT_CREATION] {
            let readers: Vec<&str> =
                PRINCIPALS.iter().filter(|p| allowed(p.name, Operation::Read, topic)).map(|p| p.name).collect();
            assert_eq!(readers, ["command-handler"], "{topic}");
        }
    }

    #[test]
    fn only_the_handler_writes_results_and_balances() {
        for topic in RESULTS {
            let writers: Vec<&str> =
                PRINCIPALS.iter().filter(|p| allowed(p.name, Operation::Write, topic)).map(|p| p.name).collect();
            assert_eq!(writers, ["command-handler"], "{topic}");
        }
    }

    #[test]
    fn every_topic_named_is_a_contract_topic_and_prefixes_apply_to_topics_and_groups() {
        for a in acls("") {
            if a.resource == Resource::Topic {
                assert!(TOPICS.iter().any(|t| t.name == a.name), "{a}");
                assert_eq!(a.pattern, Pattern::Literal, "{a}");
            } else {
                assert_eq!((a.resource, a.pattern), (Resource::Group, Pattern::Prefixed), "{a}");
            }
        }
        let prefixed = acls("t1_");
        assert_eq!(prefixed.len(), acls("").len());
        assert!(prefixed.iter().all(|a| a.name.starts_with("t1_")));
        assert!(prefixed.iter().all(|a| a.principal != ADMIN));
        assert_eq!(principal("heartbeat").map(|p| p.writes), Some(&[HEARTBEAT][..]));
        assert!(principal("synchronizer").is_none());
    }
}
