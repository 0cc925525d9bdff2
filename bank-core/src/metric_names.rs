//! Names of the metrics that one part of the bank writes and another reads (the gateway's `pipeline` view, the
//! fault tests, xtask's checks), so both sides name the same series. A metric only its own service reads keeps its
//! name where it is recorded.

/// Beats the heartbeat's producer had acknowledged (counter).
pub const HEARTBEAT_BEATS_SENT: &str = "heartbeat_beats_sent_total";
/// Commands the generator produced, by `kind` (counter).
pub const GENERATOR_COMMANDS: &str = "generator_commands_total";
/// Commands the handler committed, by `outcome` (counter).
pub const HANDLER_COMMANDS: &str = "handler_commands_total";
/// From a command's Kafka timestamp to the commit of the batch that applied it (summary, seconds).
pub const HANDLER_COMMAND_AGE: &str = "handler_command_age_seconds";
/// Failed batch attempts of the handler, by `reason` (counter).
pub const HANDLER_BATCH_RETRIES: &str = "handler_batch_retries_total";
