//! Where the local stack listens: the one table of ports and addresses. The services' clap defaults, the test
//! helpers and `cargo xtask` (which starts, probes and stops the stack) all read it, so each port is written down
//! once, here.

/// The port numbers themselves; every address below is built from them at compile time.
macro_rules! port {
    (kafka) => {
        "9092"
    };
    (kafka_controller) => {
        "9093"
    };
    (postgres) => {
        "5432"
    };
    (schema_registry) => {
        "8081"
    };
    (heartbeat) => {
        "17888"
    };
    (command_handler) => {
        "9103"
    };
    (graphql_endpoint) => {
        "8888"
    };
    (command_generator) => {
        "9102"
    };
}

/// Kafka's client listener (`KAFKA_BROKERS`).
pub const KAFKA_BROKERS: &str = concat!("localhost:", port!(kafka));
/// Kafka's KRaft controller listener (only the broker itself connects to it).
pub const KAFKA_CONTROLLER: &str = concat!("localhost:", port!(kafka_controller));

/// PostgreSQL's port.
pub const POSTGRES_PORT: &str = port!(postgres);
/// PostgreSQL's address.
pub const POSTGRES: &str = concat!("localhost:", port!(postgres));
/// The database URL services use when `DATABASE_URL` is not set (`cargo xtask up` writes the real one).
pub const DATABASE_URL: &str = concat!("postgres://openbank@localhost:", port!(postgres), "/openbank");

/// Where the schema registry listens (`SCHEMA_REGISTRY_LISTEN`).
pub const SCHEMA_REGISTRY_LISTEN: &str = concat!("127.0.0.1:", port!(schema_registry));
/// How clients reach the schema registry (`SCHEMA_REGISTRY_URL`).
pub const SCHEMA_REGISTRY_URL: &str = concat!("http://localhost:", port!(schema_registry));

/// The heartbeat's admin and metrics endpoint (`HEARTBEAT_LISTEN`).
pub const HEARTBEAT_LISTEN: &str = concat!("127.0.0.1:", port!(heartbeat));
/// The command handler's health and metrics endpoint (`COMMAND_HANDLER_LISTEN`).
pub const COMMAND_HANDLER_LISTEN: &str = concat!("127.0.0.1:", port!(command_handler));
/// The GraphQL gateway and web UI (`GRAPHQL_LISTEN`).
pub const GRAPHQL_LISTEN: &str = concat!("127.0.0.1:", port!(graphql_endpoint));
/// The gateway as a browser reaches it.
pub const GRAPHQL_URL: &str = concat!("http://localhost:", port!(graphql_endpoint));
/// The command generator's health and metrics endpoint (`COMMAND_GENERATOR_LISTEN`).
pub const COMMAND_GENERATOR_LISTEN: &str = concat!("127.0.0.1:", port!(command_generator));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_ports_are_distinct() {
        let listen = [
            SCHEMA_REGISTRY_LISTEN,
            HEARTBEAT_LISTEN,
            COMMAND_HANDLER_LISTEN,
            GRAPHQL_LISTEN,
            COMMAND_GENERATOR_LISTEN,
        ];
        let mut ports: Vec<u16> = listen
            .iter()
            .map(|a| a.parse::<std::net::SocketAddr>().map(|s| s.port()))
            .collect::<Result<_, _>>()
            .unwrap();
        for a in [KAFKA_BROKERS, KAFKA_CONTROLLER, POSTGRES] {
            ports.push(a.rsplit_once(':').unwrap().1.parse().unwrap());
        }
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n, "two components share a port");
        assert_eq!(POSTGRES_PORT.parse::<u16>().unwrap(), 5432);
        assert_eq!(DATABASE_URL, "postgres://openbank@localhost:5432/openbank");
        assert_eq!(SCHEMA_REGISTRY_URL, "http://localhost:8081");
    }
}
