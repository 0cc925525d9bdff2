//! The stack: every component in start order ([`ALL`]), finding one by record name, and whether a recorded one is
//! healthy. `down` stops them by layer (services, then the broker, then the database).

use crate::component::{Component, Layer};
use crate::instance::split_instance;
use crate::kafka::Kafka;
use crate::postgres::Postgres;
use crate::service::{Probe, Registry, RustService};
use crate::state::Record;

/// Every component `up` runs, in start order. Each one's port is its slot in `crate::ports`.
pub static ALL: &[&dyn Component] = &[
    &Postgres,
    &Kafka,
    &Registry(RustService { name: "schema-registry", probe: Probe::Http }),
    &RustService { name: "synchronizer", probe: Probe::OneShot },
    &RustService { name: "heartbeat", probe: Probe::Http },
    &RustService { name: "command-handler", probe: Probe::Http },
    &RustService { name: "graphql-endpoint", probe: Probe::Http },
    &RustService { name: "command-generator", probe: Probe::Http },
];

/// The component a state record belongs to: `command-handler-2` (a second instance) belongs to `command-handler`.
pub fn find(name: &str) -> Option<&'static dyn Component> {
    let base = split_instance(name).0;
    ALL.iter().copied().find(|c| c.name() == base)
}

/// Whether a recorded component is healthy; a record of no known component is not.
pub fn healthy(record: &Record) -> bool {
    find(&record.name).is_some_and(|c| c.healthy(record))
}

/// Whether `name` is one of the stack's own (Rust) services.
pub fn is_service(name: &str) -> bool {
    find(name).is_some_and(|c| c.layer() == Layer::Service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_have_distinct_names_and_start_in_layer_order() {
        let names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let layers: Vec<Layer> = ALL.iter().map(|c| c.layer()).collect();
        assert!(layers.windows(2).all(|w| w[0] >= w[1]), "infrastructure starts before the services: {layers:?}");
        assert_eq!(find("kafka").map(|c| c.layer()), Some(Layer::Broker));
        assert!(is_service("command-handler") && !is_service("postgres") && !is_service("nothing"));
        assert!(is_service("command-handler-2") && find("kafka-3").is_some_and(|c| c.layer() == Layer::Broker));
        assert_eq!(
            ALL.iter().filter_map(|c| c.package()).collect::<Vec<_>>(),
            names.iter().copied().filter(|n| is_service(n)).collect::<Vec<_>>()
        );
    }
}
