//! A client of a seqd cluster (or of one daemon) that follows the leader: it knows several node
//! addresses, connects to the first that answers, and sends each command with a random request
//! key until it is answered: to the leader a follower names in `Error 931`, or to the next
//! address when a connection is lost. A command whose answer was lost is resent with the same
//! key, so it is applied once: the answer is then either its outcome or the engine's
//! `DuplicateRequest` (111), which this returns as [`Delivered::AppliedBefore`]. Queries are
//! answered by any node (from its own applied state: the answer's `seq` says how far it is) and
//! are sent again after a lost connection. The policy itself is the pure state machine of
//! `follow.rs`; this file owns the sockets and the clock. docs/PROTOCOL.md §17.

use super::follow::{leader_hint, Action, FollowConfig, LeaderFollower, FAILOVER_TIMEOUT_DEFAULT};
use super::{Client, ClientError, Outcome};
use crate::engine::Command;
use crate::gateway::tls;
use crate::protocol::{GatewayError, Message};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether commands travel as `KeyedCommand` (0x04, protocol version 2) with their request key
/// (on a version-1 connection they cannot: they go as plain `Command`s, and a command whose
/// answer was lost on a dead connection is then not resent, its outcome unknown).
const KEYED_COMMANDS: bool = true;

/// `RejectReason::DuplicateRequest`: a keyed command whose (account, key) the engine
/// remembers; the first one was applied.
pub const DUPLICATE_REQUEST_CODE: u16 = crate::engine::RejectReason::DuplicateRequest as u16;

/// How long one connection attempt (QUIC and TLS handshakes, Hello/Welcome) may take.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);

/// A node silent this long counts as lost (the connection's QUIC idle timeout; the client sends
/// keep-alives every third of it). The gateway's own 30 s would hold a command sent to a leader
/// that died for 30 s before the failover could start.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);

/// The one place a command leaves with its request key.
async fn send_keyed(client: &mut Client, command: Command, request_key: u64) -> Result<Outcome, ClientError> {
    client.command_keyed(command, request_key).await
}

/// A random non-zero request key. `RandomState` is seeded from the operating system's random
/// source; a process-wide counter and the time make each key drawn distinct.
pub fn random_request_key() -> u64 {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(DRAWN.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        hasher.write_u128(now.as_nanos());
        let key = hasher.finish();
        if key != 0 {
            return key;
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The nodes' client addresses (`host:port`), tried in this order. One address is a single
    /// daemon.
    pub addresses: Vec<String>,
    /// The name the servers' certificates must carry (the development certificates: `localhost`).
    pub server_name: String,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a request may spend finding a working node (an election, a node restarting)
    /// before it fails.
    pub failover_timeout: Duration,
    /// A node silent this long counts as lost ([`IDLE_TIMEOUT_DEFAULT`]; set by
    /// [`ClusterClient::connect`], not by `connect_with`, whose configuration is used as given).
    pub idle_timeout: Duration,
}

impl ClusterConfig {
    pub fn new(addresses: Vec<String>) -> ClusterConfig {
        ClusterConfig {
            addresses,
            server_name: tls::SERVER_NAME.to_owned(),
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            failover_timeout: FAILOVER_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
        }
    }
}

/// A command's answer through a [`ClusterClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Sequenced now: its outcome (a `Rejected` event if the engine said no).
    Applied(Outcome),
    /// An earlier send of this command (the same request key) was applied; this one was
    /// sequenced as a `DuplicateRequest` (111) rejection and changed nothing. Its `seq` is the
    /// rejection's.
    AppliedBefore(Outcome),
}

impl Delivered {
    pub fn outcome(&self) -> &Outcome {
        match self {
            Delivered::Applied(outcome) | Delivered::AppliedBefore(outcome) => outcome,
        }
    }

    pub fn applied_before(&self) -> bool {
        matches!(self, Delivered::AppliedBefore(_))
    }
}

/// Connection parameters every attempt shares.
struct Dialer {
    quic: quinn::ClientConfig,
    server_name: String,
    connect_timeout: Duration,
    failover_timeout: Duration,
}

impl Dialer {
    /// One attempt at `address`, within the connect timeout.
    async fn dial(&self, address: &str) -> Result<Client, String> {
        let attempt = async {
            let addr = tokio::net::lookup_host(address)
                .await
                .map_err(|e| format!("resolve: {e}"))?
                .next()
                .ok_or_else(|| "resolves to no address".to_owned())?;
            Client::connect_named(addr, &self.server_name, self.quic.clone()).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(connected) => connected,
            Err(_) => Err(format!("no answer within {} s", self.connect_timeout.as_secs_f64())),
        }
    }

    /// Carries out `action` and what follows until a connection is up or the follower gives
    /// up. `last_error` is what led here (reported if it gives up at once).
    async fn reach(
        &self,
        follower: &mut LeaderFollower,
        mut action: Action,
        mut last_error: String,
    ) -> Result<Client, ClientError> {
        // The first connect reports every address's error; a failover its last one.
        let mut errors = Vec::new();
        loop {
            let (address, delay) = match action {
                Action::Connect { address, delay } => (address, delay),
                Action::GiveUp if !follower.connected_once() => return Err(ClientError::Connect(errors.join("; "))),
                Action::GiveUp => {
                    return Err(ClientError::Connect(format!(
                        "no node took the request within {} s (failover timeout); last: {last_error}",
                        self.failover_timeout.as_secs_f64()
                    )))
                }
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match self.dial(&address).await {
                Ok(client) => {
                    follower.on_connected();
                    return Ok(client);
                }
                Err(e) => {
                    last_error = format!("{address}: {e}");
                    if !follower.connected_once() {
                        errors.push(last_error.clone());
                    }
                    action = follower.on_unreachable(Instant::now());
                }
            }
        }
    }
}

/// What to do after a request failed.
enum Failed {
    /// Reconnect as `Action` says, then send again.
    Retry(Action, String),
    Fail(ClientError),
}

/// A client that follows the leader (see the module documentation). For subscriptions and the
/// pipelined API, use the current connection, [`ClusterClient::client`]; they do not fail over.
pub struct ClusterClient {
    dialer: Dialer,
    follower: LeaderFollower,
    client: Client,
    resends: u64,
}

impl ClusterClient {
    /// Connects with the given PEM files to the first address that answers (each is tried once).
    pub async fn connect(
        config: ClusterConfig,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<ClusterClient, ClientError> {
        let mut quic =
            tls::client_config(ca_pem, cert_pem, key_pem).map_err(|e| ClientError::Connect(e.to_string()))?;
        let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
            .map_err(|_| ClientError::Connect(format!("idle timeout {:?} is too long", config.idle_timeout)))?;
        let mut transport = tls::transport_config();
        transport.max_idle_timeout(Some(idle)).keep_alive_interval(Some(config.idle_timeout / 3));
        quic.transport_config(std::sync::Arc::new(transport));
        ClusterClient::connect_with(config, quic).await
    }

    /// Connects with a ready quinn client configuration (its transport settings as they are: see
    /// [`ClusterConfig::idle_timeout`]).
    pub async fn connect_with(config: ClusterConfig, quic: quinn::ClientConfig) -> Result<ClusterClient, ClientError> {
        let follow = FollowConfig { failover_timeout: config.failover_timeout, ..FollowConfig::default() };
        let mut follower = LeaderFollower::new(config.addresses, follow).map_err(ClientError::Connect)?;
        let dialer = Dialer {
            quic,
            server_name: config.server_name,
            connect_timeout: config.connect_timeout,
            failover_timeout: config.failover_timeout,
        };
        let first = follower.start(Instant::now());
        let client = dialer.reach(&mut follower, first, String::new()).await?;
        Ok(ClusterClient { dialer, follower, client, resends: 0 })
    }

    /// The address of the node connected to.
    pub fn address(&self) -> &str {
        self.follower.connected()
    }

    /// The current connection (replaced on a failover).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether commands carry their request key on this connection (protocol version 2 and a
    /// library that sends `KeyedCommand`): only then is a command resent after a lost answer,
    /// and only then can the answer be [`Delivered::AppliedBefore`].
    pub fn keyed(&self) -> bool {
        KEYED_COMMANDS && self.client.welcome.protocol_version >= 2
    }

    /// Sends after a failed request so far (931 redirects, lost connections), since the start.
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// Sends a command under a new random request key until a node sequences it.
    pub async fn command(&mut self, command: Command) -> Result<Delivered, ClientError> {
        self.command_with_key(command, random_request_key()).await
    }

    /// Sends a command under `request_key` (non-zero; keep it to send the same command again
    /// later, e.g. after this returned an error: it is then applied at most once) until a node
    /// sequences it. Errors: the engine's and gateway's refusals other than 930 and 931, and a
    /// failover that found no leader within the failover timeout (the command may or may not
    /// have been applied: send it again with the same key to find out).
    pub async fn command_with_key(&mut self, command: Command, request_key: u64) -> Result<Delivered, ClientError> {
        if request_key == 0 {
            return Err(ClientError::Protocol("a request key is non-zero".into()));
        }
        loop {
            self.reconnect_if_closed().await?;
            let keyed = self.keyed();
            let sent = if keyed {
                send_keyed(&mut self.client, command, request_key).await
            } else {
                self.client.command(command).await
            };
            let failed = match sent {
                Ok(outcome) => {
                    self.follower.on_answered();
                    let before = keyed && outcome.rejected() == Some(DUPLICATE_REQUEST_CODE);
                    return Ok(if before { Delivered::AppliedBefore(outcome) } else { Delivered::Applied(outcome) });
                }
                Err(ClientError::Io(e)) if !keyed => Failed::Fail(ClientError::Io(format!(
                    "{e}; the command's outcome is unknown (sent without a request key: see docs/PROTOCOL.md §9)"
                ))),
                Err(e) => self.failed(e),
            };
            self.retry(failed).await?;
        }
    }

    /// Sends a query (or Ping) and returns its answer, sending it again on another node if the
    /// connection is lost (see [`Client::request`]).
    pub async fn request(&mut self, message: &Message) -> Result<Message, ClientError> {
        self.query(message, false).await
    }

    /// Sends a query and returns its whole answer (see [`Client::request_all`]), sending it
    /// again on another node if the connection is lost.
    pub async fn request_all(&mut self, message: &Message) -> Result<Message, ClientError> {
        self.query(message, true).await
    }

    /// `request` (`all`: `request_all`) with the failover around it.
    async fn query(&mut self, message: &Message, all: bool) -> Result<Message, ClientError> {
        loop {
            self.reconnect_if_closed().await?;
            let answer = if all { self.client.request_all(message).await } else { self.client.request(message).await };
            match answer {
                Ok(answer) => {
                    self.follower.on_answered();
                    return Ok(answer);
                }
                Err(e) => {
                    let failed = self.failed(e);
                    self.retry(failed).await?
                }
            }
        }
    }

    /// Closes the current connection (see [`Client::close`]).
    pub async fn close(self) {
        self.client.close().await;
    }

    /// What a failed request leads to: 931 follows the named leader, 930 and a lost connection
    /// go to the next node, anything else is the caller's.
    fn failed(&mut self, error: ClientError) -> Failed {
        let now = Instant::now();
        let at = self.address().to_owned();
        match error {
            ClientError::Refused { code, message } if code == GatewayError::NotLeader.code() => {
                Failed::Retry(self.follower.on_not_leader(&leader_hint(&message), now), format!("{at}: {message}"))
            }
            ClientError::Refused { code, message } if code == GatewayError::ShuttingDown.code() => {
                Failed::Retry(self.follower.on_unreachable(now), format!("{at}: {message}"))
            }
            ClientError::Io(e) => Failed::Retry(self.follower.on_unreachable(now), format!("{at}: {e}")),
            e => Failed::Fail(e),
        }
    }

    async fn retry(&mut self, failed: Failed) -> Result<(), ClientError> {
        match failed {
            Failed::Retry(action, why) => {
                let client = self.dialer.reach(&mut self.follower, action, why).await?;
                self.replace(client);
                self.resends += 1;
                Ok(())
            }
            Failed::Fail(e) => Err(e),
        }
    }

    /// A connection the server closed meanwhile (a node stopped between two requests) is
    /// replaced before anything is sent on it.
    async fn reconnect_if_closed(&mut self) -> Result<(), ClientError> {
        if let Some(reason) = self.client.close_reason() {
            let why = format!("{}: {reason}", self.address());
            let action = self.follower.on_unreachable(Instant::now());
            let client = self.dialer.reach(&mut self.follower, action, why).await?;
            self.replace(client);
        }
        Ok(())
    }

    /// Moves to a new connection. The old one is closed at once (not waited for), so the node
    /// left (a follower, usually) frees it now rather than at its idle timeout.
    fn replace(&mut self, client: Client) {
        let old = std::mem::replace(&mut self.client, client);
        old.connection.close(0u32.into(), b"following the leader");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_are_non_zero_and_distinct() {
        let keys: std::collections::BTreeSet<u64> = (0..10_000).map(|_| random_request_key()).collect();
        assert_eq!(keys.len(), 10_000);
        assert!(!keys.contains(&0));
    }

    #[test]
    fn delivered_tells_applied_before_from_applied() {
        let outcome = Outcome { seq: 7, events: Vec::new() };
        assert!(!Delivered::Applied(outcome.clone()).applied_before());
        assert!(Delivered::AppliedBefore(outcome.clone()).applied_before());
        assert_eq!(Delivered::AppliedBefore(outcome.clone()).outcome(), &outcome);
    }
}
