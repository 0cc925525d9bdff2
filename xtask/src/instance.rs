//! Instance names: the first instance of a component keeps its plain name, the others get `-<n>` (`kafka-3`,
//! `command-handler-2`). A leaf: records, ports and components all name instances this way.

/// The record name of instance `n` of `base`: the first instance keeps the plain name, the others get `-<n>`.
pub fn instance_name(base: &str, n: u32) -> String {
    if n <= 1 { base.to_owned() } else { format!("{base}-{n}") }
}

/// `(component, instance)` of a record name: `kafka-3` is `("kafka", 3)`, `command-handler` is
/// `("command-handler", 1)`.
pub fn split_instance(name: &str) -> (&str, u32) {
    match name.rsplit_once('-') {
        Some((base, n)) if !base.is_empty() && !n.starts_with('0') => match n.parse::<u32>() {
            Ok(n) if n >= 2 => (base, n),
            _ => (name, 1),
        },
        _ => (name, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_have_their_own_names() {
        assert_eq!(instance_name("command-handler", 1), "command-handler");
        assert_eq!(instance_name("command-handler", 2), "command-handler-2");
        assert_eq!(split_instance("command-handler-2"), ("command-handler", 2));
        assert_eq!(split_instance("command-handler"), ("command-handler", 1));
        assert_eq!(split_instance("kafka-3"), ("kafka", 3));
        for odd in ["kafka-1", "kafka-0", "kafka-02", "-2", "kafka-", "kafka-x"] {
            assert_eq!(split_instance(odd), (odd, 1), "{odd}");
        }
    }
}
