//! The few Kafka protocol requests the bank sends by hand, over a blocking socket: SASL/SCRAM-SHA-256
//! authentication, the broker count of a Metadata answer and CreateAcls.
//!
//! Hand-built on purpose: xtask's probes must not link librdkafka (a C build, and seconds to give up on a broker
//! that is not there), and librdkafka's Rust binding has no safe ACL API. Every request uses a version without
//! tagged fields (request header v1, response header v0), which Kafka 4 still serves.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const METADATA: i16 = 3;
const CREATE_ACLS: i16 = 30;
/// Largest answer read (a Metadata answer of a dev cluster with thousands of test topics stays far below).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A SCRAM user and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// One connection to one broker, authenticated when credentials are given.
pub struct Connection {
    stream: TcpStream,
    correlation: i32,
}

impl Connection {
    /// Connects to `host_port` (half a second to connect, `timeout` for each answer) and, with `credentials`,
    /// authenticates with SCRAM-SHA-256 (the broker's signature is checked too).
    pub fn open(host_port: &str, credentials: Option<&Credentials>, timeout: Duration) -> anyhow::Result<Self> {
        // Every address the name has, IPv4 first: `localhost` may resolve to ::1 before 127.0.0.1, and a broker
        // that listens on one of them only must still be found.
        let mut addrs: Vec<std::net::SocketAddr> =
            host_port.to_socket_addrs().with_context(|| format!("cannot resolve {host_port}"))?.collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        let mut last = None;
        let mut stream = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, Duration::from_millis(500)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(anyhow::Error::new(e).context(format!("cannot connect to {host_port}"))),
            (None, None) => bail!("no address for {host_port}"),
        };
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut c = Self { stream, correlation: 0 };
        if let Some(credentials) = credentials {
            c.authenticate(credentials)?;
        }
        Ok(c)
    }

    fn authenticate(&mut self, credentials: &Credentials) -> anyhow::Result<()> {
        let mut body = Vec::new();
        put_str(&mut body, "SCRAM-SHA-256");
        let answer = self.call(SASL_HANDSHAKE, 1, &body)?;
        let mut r = Reader(&answer);
        let code = r.i16()?;
        if code != 0 {
            bail!("the broker does not offer SCRAM-SHA-256 (SaslHandshake error {code})");
        }
        let mut scram = Scram::new(&credentials.username, &credentials.password, &nonce()?);
        let server_first = self.sasl_round(scram.client_first().as_bytes())?;
        let client_final = scram.client_final(&String::from_utf8_lossy(&server_first))?;
        let server_final = self.sasl_round(client_final.as_bytes())?;
        scram.verify_server(&String::from_utf8_lossy(&server_final))
    }

    fn sasl_round(&mut self, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        put_bytes(&mut body, bytes);
        let answer = self.call(SASL_AUTHENTICATE, 1, &body)?;
        let mut r = Reader(&answer);
        let code = r.i16()?;
        let message = r.nullable_str()?;
        if code != 0 {
            bail!("authentication refused (error {code}: {})", message.unwrap_or_default());
        }
        Ok(r.bytes()?.to_vec())
    }

    /// The number of live brokers a Metadata (v1, all topics) answer lists.
    pub fn broker_count(&mut self) -> anyhow::Result<i32> {
        let answer = self.call(METADATA, 1, &(-1i32).to_be_bytes())?;
        Reader(&answer).i32()
    }

    /// Creates `acls` in one request; an ACL that exists already is no error. Fails naming the first refusal.
    pub fn create_acls(&mut self, acls: &[Acl]) -> anyhow::Result<()> {
        let mut body = Vec::new();
        put_len(&mut body, acls.len())?;
        for a in acls {
            body.push(a.resource.code());
            put_str(&mut body, &a.name);
            body.push(a.pattern.code());
            put_str(&mut body, &format!("User:{}", a.principal));
            put_str(&mut body, "*");
            body.push(a.operation.code());
            body.push(3); // ALLOW
        }
        let answer = self.call(CREATE_ACLS, 1, &body)?;
        let mut r = Reader(&answer);
        let _throttle = r.i32()?;
        let n = r.i32()?;
        if usize::try_from(n).ok() != Some(acls.len()) {
            bail!("CreateAcls answered {n} results for {} ACLs", acls.len());
        }
        for a in acls {
            let code = r.i16()?;
            let message = r.nullable_str()?;
            if code != 0 {
                bail!("the broker refused the ACL {a} (error {code}: {})", message.unwrap_or_default());
            }
        }
        Ok(())
    }

    /// Sends one request and returns the answer's body (after its correlation id, which is checked).
    fn call(&mut self, api: i16, version: i16, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.correlation += 1;
        let client = b"open-bank";
        let mut frame = Vec::with_capacity(body.len() + 32);
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&api.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&self.correlation.to_be_bytes());
        frame.extend_from_slice(&i16::try_from(client.len()).unwrap_or(0).to_be_bytes());
        frame.extend_from_slice(client);
        frame.extend_from_slice(body);
        let size = i32::try_from(frame.len() - 4).context("request too large")?;
        if let Some(head) = frame.get_mut(..4) {
            head.copy_from_slice(&size.to_be_bytes());
        }
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).context("the broker closed the connection")?;
        let len = usize::try_from(i32::from_be_bytes(size)).context("negative frame size")?;
        if !(4..=MAX_FRAME).contains(&len) {
            bail!("unexpected kafka frame size {len}");
        }
        let mut answer = vec![0u8; len];
        self.stream.read_exact(&mut answer)?;
        let mut r = Reader(&answer);
        let corr = r.i32()?;
        if corr != self.correlation {
            bail!("answer to another request ({corr}, expected {})", self.correlation);
        }
        Ok(answer.split_off(4))
    }
}

/// What an ACL is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Topic,
    Group,
    Cluster,
}

impl Resource {
    fn code(self) -> u8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
        }
    }
}

/// Whether an ACL's name is the resource's whole name or a prefix of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pattern {
    Literal,
    Prefixed,
}

impl Pattern {
    fn code(self) -> u8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }
}

/// The operations the bank's principals are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Create,
    Describe,
    DescribeConfigs,
    AlterConfigs,
    Alter,
}

impl Operation {
    fn code(self) -> u8 {
        match self {
            Self::Read => 3,
            Self::Write => 4,
            Self::Create => 5,
            Self::Alter => 7,
            Self::Describe => 8,
            Self::DescribeConfigs => 10,
            Self::AlterConfigs => 11,
        }
    }
}

/// One "allow `principal` to `operation` on `resource` `name`, from any host" rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    pub principal: String,
    pub resource: Resource,
    pub pattern: Pattern,
    pub name: String,
    pub operation: Operation,
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = if self.pattern == Pattern::Prefixed { "*" } else { "" };
        write!(f, "User:{} {:?} {:?} {}{pattern}", self.principal, self.operation, self.resource, self.name)
    }
}

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.
struct Scram {
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    fn new(username: &str, password: &str, nonce: &str) -> Self {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Self {
            password: password.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_owned(),
            server_signature: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn client_final(&mut self, server_first: &str) -> anyhow::Result<String> {
        let field = |k: &str| {
            server_first.split(',').find_map(|p| p.strip_prefix(k)).with_context(|| format!("no `{k}` from the broker"))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            bail!("the broker's nonce does not extend ours");
        }
        let salt = B64.decode(field("s=")?).context("the broker's salt is not base64")?;
        let iterations: u32 = field("i=")?.parse().context("the broker's iteration count is not a number")?;
        if !(4096..=1_000_000).contains(&iterations) {
            bail!("the broker asks for {iterations} iterations");
        }
        let salted = hi(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    fn verify_server(&self, server_final: &str) -> anyhow::Result<()> {
        if let Some(e) = server_final.strip_prefix("e=") {
            bail!("authentication refused: {e}");
        }
        let got = server_final.strip_prefix("v=").and_then(|v| B64.decode(v).ok());
        if got.is_none() || got != self.server_signature {
            bail!("the broker's SCRAM signature is wrong: it does not know this password");
        }
        Ok(())
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// PBKDF2-HMAC-SHA-256 with one block: SCRAM's `Hi`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

fn nonce() -> anyhow::Result<String> {
    let mut buf = [0u8; 24];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(B64.encode(buf).replace(',', "-"))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&i16::try_from(s.len()).unwrap_or(i16::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&i32::try_from(b.len()).unwrap_or(i32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_len(out: &mut Vec<u8>, n: usize) -> anyhow::Result<()> {
    out.extend_from_slice(&i32::try_from(n).context("too many entries")?.to_be_bytes());
    Ok(())
}

/// Reads big-endian fields off an answer, failing on a short one.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        if self.0.len() < n {
            bail!("short answer from the broker");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn nullable_str(&mut self) -> anyhow::Result<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(self.take(usize::try_from(n)?)?).into_owned()))
    }

    fn bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(&[]);
        }
        self.take(usize::try_from(n)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user `user`, password `pencil`).
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut s = Scram::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = s.client_final(server_first).unwrap();
        assert_eq!(
            last,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
        assert!(s.verify_server("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").is_err());
        assert!(s.verify_server("e=invalid-proof").is_err());
    }

    #[test]
    fn a_broker_that_does_not_extend_the_nonce_or_asks_too_little_work_is_refused() {
        let mut s = Scram::new("user", "pencil", "abc");
        assert!(s.client_final("r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").is_err());
        assert!(s.client_final("r=abc123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1").is_err());
        assert!(s.client_final("r=abc123,i=4096").is_err());
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(Scram::new("a=b,c", "p", "n").client_first(), "n,,n=a=3Db=2Cc,r=n");
    }

    #[test]
    fn short_answers_fail_cleanly() {
        let mut r = Reader(&[0, 1, 0]);
        assert_eq!(r.i16().unwrap(), 1);
        assert!(r.i16().is_err());
        assert!(Reader(&[0, 0, 0, 9, 1]).bytes().is_err());
        assert_eq!(Reader(&[0xff, 0xff]).nullable_str().unwrap(), None);
    }

    #[test]
    fn a_name_is_tried_at_each_of_its_addresses() {
        // A listener on IPv4 loopback only is found by `localhost`, whatever order the resolver gives.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(Connection::open(&format!("localhost:{port}"), None, Duration::from_secs(1)).is_ok());
        drop(listener);
        assert!(Connection::open(&format!("127.0.0.1:{port}"), None, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn credentials_do_not_print_the_password() {
        let c = Credentials { username: "admin".into(), password: "s3cret".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
