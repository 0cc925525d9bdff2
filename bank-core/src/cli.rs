//! The flags every service binary has besides its settings:
//!
//! - `--check-config`: parse and validate the settings (flags and environment), print `configuration ok` and exit 0,
//!   or print what is wrong and exit 1. It connects to nothing. The same validation runs at every start.
//! - `--probe URL`: one HTTP GET of a probe endpoint (`http://127.0.0.1:PORT/ready`); exit 0 on a 2xx answer, 1
//!   otherwise. Container images have no curl: this is their healthcheck.
//! - `--print-config-vars`: the environment variables the settings read, one a line (the compose check in xtask
//!   compares them with `docker-compose.yml`).
//!
//! Every setting read from a variable `VAR` can also come from a file: `VAR_FILE=/path` (Docker's secrets
//! convention, as the official postgres image has it), used when `VAR` itself is not set. docker-compose.yml hands
//! the generated secrets to the services that way, so they never sit in an environment variable of the compose file.
//!
//! Services call [`parse`] instead of `Config::parse()`.

use anyhow::{Context, bail, ensure};
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::{CommonArgs, DatabaseArgs};

/// How long `--probe` waits for the connection and for the answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `command` with `--check-config`, `--probe` and `--print-config-vars` added (global: also after a subcommand).
pub fn with_ops(command: Command) -> Command {
    command
        .arg(
            Arg::new("check-config")
                .global(true)
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Parse and validate the settings, then exit (0: valid); connects to nothing"),
        )
        .arg(
            Arg::new("probe")
                .global(true)
                .long("probe")
                .value_name("URL")
                .help("GET a probe endpoint (e.g. http://127.0.0.1:PORT/ready) and exit 0 on a 2xx answer"),
        )
        .arg(
            Arg::new("print-config-vars")
                .global(true)
                .long("print-config-vars")
                .action(ArgAction::SetTrue)
                .help("Print the environment variables the settings read, one a line, then exit"),
        )
}

/// The settings from the command line and the environment, validated by `validate`. Handles the three flags
/// above (each exits the process) and exits with clap's message on a parse error.
pub fn parse<C: CommandFactory + FromArgMatches>(validate: impl FnOnce(&C) -> anyhow::Result<()>) -> C {
    let mut command = match from_files(with_ops(C::command()), &|var| std::env::var_os(var)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid configuration: {e:#}", C::command().get_name());
            std::process::exit(1)
        }
    };
    let matches = command.clone().get_matches();
    let name = command.get_name().to_owned();
    if let Some(url) = matches.get_one::<String>("probe") {
        match probe(url, PROBE_TIMEOUT) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("{name}: probe {url} failed: {e:#}");
                std::process::exit(1)
            }
        }
    }
    if matches.get_flag("print-config-vars") {
        for var in config_vars(&command) {
            println!("{var}");
        }
        std::process::exit(0);
    }
    let config = match C::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.format(&mut command).exit(),
    };
    let checked = validate(&config);
    match (checked, matches.get_flag("check-config")) {
        (Ok(()), false) => config,
        (Ok(()), true) => {
            eprintln!("{name}: configuration ok");
            std::process::exit(0)
        }
        (Err(e), _) => {
            eprintln!("{name}: invalid configuration: {e:#}");
            std::process::exit(1)
        }
    }
}

/// `command` with each setting whose variable `VAR` is unset but `VAR_FILE` names a file defaulting to that file's
/// contents (one trailing newline dropped). The value is hidden from `--help`; an unreadable file is an error that
/// names the variable and the file, never the contents.
pub fn from_files(command: Command, env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> anyhow::Result<Command> {
    let mut values: Vec<(clap::Id, &'static str)> = Vec::new();
    for arg in command.get_arguments() {
        let Some(var) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else { continue };
        if env(&var).is_some() {
            continue;
        }
        let Some(path) = env(&format!("{var}_FILE")) else { continue };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{var}_FILE: cannot read {}", std::path::Path::new(&path).display()))?;
        let text = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
        // Read once at start, kept for the life of the process: clap's defaults are `'static`.
        values.push((arg.get_id().clone(), Box::leak(text.to_owned().into_boxed_str())));
    }
    let mut command = command;
    for (id, value) in values {
        command = command.mut_arg(id, |a| a.default_value(value).hide_default_value(true));
    }
    let subcommands: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in subcommands {
        let Some(sub) = command.find_subcommand(&name).cloned() else { continue };
        let sub = from_files(sub, env)?;
        command = command.mut_subcommand(&name, |_| sub);
    }
    Ok(command)
}

/// Every environment variable `command` (and its subcommands) reads, sorted, without duplicates.
pub fn config_vars(command: &Command) -> Vec<String> {
    let mut vars = Vec::new();
    let mut todo = vec![command];
    while let Some(c) = todo.pop() {
        vars.extend(c.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()));
        todo.extend(c.get_subcommands());
    }
    vars.sort();
    vars.dedup();
    vars
}

/// The shared settings: brokers, registry URL and log format.
pub fn check_common(c: &CommonArgs) -> anyhow::Result<()> {
    check_brokers(&c.kafka_brokers).context("KAFKA_BROKERS")?;
    match (&c.kafka_sasl_username, &c.kafka_sasl_password) {
        (Some(u), _) if u.is_empty() => anyhow::bail!("KAFKA_SASL_USERNAME is empty"),
        (Some(_), None) => anyhow::bail!("KAFKA_SASL_USERNAME is set but KAFKA_SASL_PASSWORD (or its _FILE) is not"),
        (None, Some(_)) => anyhow::bail!("KAFKA_SASL_PASSWORD is set but KAFKA_SASL_USERNAME is not"),
        _ => {}
    }
    check_http_url(&c.schema_registry_url).context("SCHEMA_REGISTRY_URL")?;
    check_log_format(&c.log_format)
}

/// The database settings: a `postgres://` URL with a host, and a pool of at least one connection.
pub fn check_database(d: &DatabaseArgs) -> anyhow::Result<()> {
    let url = d.database_url.as_str();
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("DATABASE_URL must start with postgres://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // The message never repeats the URL: a password with an unencoded '/', '?' or '#' would end up in it.
    check_host_port(host_port, true).map_err(|_| {
        anyhow::anyhow!(
            "DATABASE_URL needs a host (and optional port) after its '@'; percent-encode '/', '?', '#' and '@' \
             in the user name and password"
        )
    })?;
    ensure!(d.database_max_connections >= 1, "DATABASE_MAX_CONNECTIONS must be at least 1");
    Ok(())
}

/// `text` or `json`.
pub fn check_log_format(f: &str) -> anyhow::Result<()> {
    ensure!(matches!(f, "text" | "json"), "LOG_FORMAT must be `text` or `json`, not `{f}`");
    Ok(())
}

/// A comma-separated list of `host:port`.
pub fn check_brokers(list: &str) -> anyhow::Result<()> {
    ensure!(!list.trim().is_empty(), "no broker given");
    for broker in list.split(',') {
        check_host_port(broker.trim(), false).with_context(|| format!("broker `{broker}`"))?;
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host (and a valid port if it names one).
pub fn check_http_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    check_host_port(authority, true).with_context(|| format!("`{url}`"))
}

/// `host:port` (`port_optional`: or just `host`); an IPv6 host is in brackets.
fn check_host_port(s: &str, port_optional: bool) -> anyhow::Result<()> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (s, None),
    };
    ensure!(!host.is_empty() && !host.contains(char::is_whitespace), "no host in `{s}`");
    match port {
        Some(p) => {
            let n: u16 = p.parse().with_context(|| format!("bad port in `{s}`"))?;
            ensure!(n > 0, "port 0 in `{s}`");
        }
        None if !port_optional => bail!("no port in `{s}`"),
        None => {}
    }
    Ok(())
}

/// One `GET` of `url` (`http://host:port/path`); Ok on a 2xx status.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let rest = url.strip_prefix("http://").context("only http:// URLs can be probed")?;
    let (authority, path) =
        rest.find('/').map_or((rest, "/"), |i| (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("/")));
    check_host_port(authority, false)?;
    let addr = authority.to_socket_addrs()?.next().with_context(|| format!("`{authority}` resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write (`write!` on the stream would send each piece of the format as a segment of its own).
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes())?;
    // The status line is all that matters: read at most 1 KiB.
    let mut head = Vec::with_capacity(1024);
    stream.take(1024).read_to_end(&mut head)?;
    let status = status_code(&head).context("no HTTP status line in the answer")?;
    ensure!((200..300).contains(&status), "answered {status}");
    Ok(())
}

/// The status code of an HTTP/1.x answer's first line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    #[command(name = "demo")]
    struct Demo {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:1")]
        listen: std::net::SocketAddr,
    }

    #[test]
    fn config_vars_lists_flattened_and_own_variables() {
        let vars = config_vars(&with_ops(Demo::command()));
        assert_eq!(
            vars,
            [
                "DEMO_LISTEN",
                "KAFKA_BROKERS",
                "KAFKA_SASL_PASSWORD",
                "KAFKA_SASL_USERNAME",
                "LOG_FORMAT",
                "SCHEMA_REGISTRY_URL",
                "TOPIC_PREFIX"
            ]
        );
    }

    #[test]
    fn the_extra_flags_do_not_disturb_the_settings() {
        let m = with_ops(Demo::command()).try_get_matches_from(["demo", "--check-config", "--listen", "0.0.0.0:9"]);
        let m = m.unwrap();
        assert!(m.get_flag("check-config"));
        let d = Demo::from_arg_matches(&m).unwrap();
        assert_eq!(d.listen.port(), 9);
        check_common(&d.common).unwrap();
    }

    #[derive(Parser, Debug)]
    #[command(name = "tool")]
    struct Tool {
        #[command(subcommand)]
        cmd: Option<Sub>,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Run {
            #[arg(long, env = "TOOL_RATE", default_value_t = 1)]
            rate: u32,
        },
    }

    #[test]
    fn the_flags_work_after_a_subcommand_and_its_variables_are_listed() {
        let m =
            with_ops(Tool::command()).try_get_matches_from(["tool", "run", "--rate", "5", "--check-config"]).unwrap();
        assert!(m.get_flag("check-config"));
        assert!(matches!(Tool::from_arg_matches(&m).unwrap().cmd, Some(Sub::Run { rate: 5 })));
        assert_eq!(config_vars(&with_ops(Tool::command())), ["TOOL_RATE"]);
    }

    #[test]
    fn validation_finds_bad_settings() {
        check_brokers("kafka-1:9092,kafka-2:9092").unwrap();
        assert!(check_brokers("").is_err());
        assert!(check_brokers("kafka").is_err());
        assert!(check_brokers("kafka:x").is_err());
        check_http_url("http://schema-registry:8081").unwrap();
        check_http_url("http://[::1]:8081/x").unwrap();
        assert!(check_http_url("schema-registry:8081").is_err());
        assert!(check_http_url("http://:8081").is_err());
        assert!(check_log_format("yaml").is_err());
        let db = |url: &str| DatabaseArgs { database_url: url.into(), database_max_connections: 4 };
        check_database(&db("postgres://u:p@postgres:5432/openbank")).unwrap();
        check_database(&db("postgresql://postgres/openbank")).unwrap();
        assert!(check_database(&db("mysql://u@h/d")).is_err());
        assert!(check_database(&db("postgres://u:p@postgres:99999/d")).is_err());
        let e = check_database(&db("postgres://bank:s3cret/with-slash@postgres:5432/d")).unwrap_err();
        assert!(!format!("{e:#}").contains("s3cret"), "the password never shows in the error: {e:#}");
    }

    #[test]
    fn a_setting_comes_from_its_file_unless_the_variable_is_set() {
        // TOOL_RATE is in no real environment (clap reads the process's own, `env` is the one `from_files` sees).
        let dir = std::env::temp_dir().join(format!("bank-core-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rate");
        std::fs::write(&file, "7\n").unwrap();
        let run = |vars: Vec<(&'static str, std::ffi::OsString)>| {
            let env = move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
            let m = from_files(with_ops(Tool::command()), &env).unwrap().try_get_matches_from(["tool", "run"]).unwrap();
            match Tool::from_arg_matches(&m).unwrap().cmd {
                Some(Sub::Run { rate }) => rate,
                None => 0,
            }
        };
        // A subcommand's setting from its file (one trailing newline dropped).
        assert_eq!(run(vec![("TOOL_RATE_FILE", file.clone().into_os_string())]), 7);
        // The variable wins over the file: the file is not read (clap then takes the variable, here the default).
        assert_eq!(run(vec![("TOOL_RATE", "3".into()), ("TOOL_RATE_FILE", file.clone().into_os_string())]), 1);
        assert_eq!(run(vec![]), 1);
        let missing = |k: &str| (k == "TOOL_RATE_FILE").then(|| dir.join("absent").into_os_string());
        let e = from_files(with_ops(Tool::command()), &missing).unwrap_err();
        assert!(format!("{e:#}").contains("TOOL_RATE_FILE"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\nx: y\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_code(b"SSH-2.0\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn probe_reads_the_status_of_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Service Unavailable\r\n\r\n"] {
                let (mut s, _) = listener.accept().unwrap();
                // The whole request first: closing a socket with unread bytes resets the connection (the probe then
                // sees "connection reset" instead of the answer).
                let mut request = Vec::new();
                let mut buf = [0u8; 256];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        probe(&format!("http://{addr}/ready"), PROBE_TIMEOUT).unwrap();
        assert!(probe(&format!("http://{addr}/ready"), PROBE_TIMEOUT).is_err());
        server.join().unwrap();
        assert!(probe("https://example.invalid/", PROBE_TIMEOUT).is_err());
    }
}
