//! `ClusterClient` against a real `seqd run` (a single node answers as the leader) and fake
//! nodes that play a cluster's other members over real QUIC and TLS: a follower that refuses
//! every command with `Error 931` (naming the daemon, or no leader), a node that closes the
//! connection after the handshake, one that drops it when a command arrives. The policy's every
//! branch is unit-tested in src/client/follow.rs; these check the sockets follow it.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{runtime, Daemon};
use seqd::client::{ClientError, ClusterClient, ClusterConfig, Delivered};
use seqd::engine::{AssetId, Command};
use seqd::gateway::{server::not_leader, tls};
use seqd::protocol::{encode_frame_as, FrameDecoder, Message, Welcome, DEFAULT_MAX_FRAME_BYTES};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a fake node does with a command.
#[derive(Clone)]
enum Fake {
    /// `Error 931` naming this leader (`None`: `leader=?`).
    Follower(Option<String>),
    /// Closes the connection once the handshake is done.
    CloseAfterHello,
    /// Closes the connection when a command arrives (its answer is lost).
    DropOnCommand,
}

/// A fake node on a free port with the daemon's server certificate; counts the commands it got.
async fn fake_node(certs: &Path, fake: Fake) -> (SocketAddr, Arc<AtomicU64>) {
    let (config, _) = tls::load_server_config(certs, false).unwrap();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let commands = Arc::new(AtomicU64::new(0));
    let counted = commands.clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let (fake, counted) = (fake.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                let Ok((mut send, mut recv)) = connection.accept_bi().await else { return };
                let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
                let mut version = 1;
                while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
                    let mut input = &chunk.bytes[..];
                    let mut out = Vec::new();
                    while let Ok(Some(frame)) = decoder.decode(&mut input) {
                        let request_id = frame.request_id;
                        let answer = match Message::decode_from_client(&frame) {
                            Ok(Message::Hello { .. }) => {
                                version = 2;
                                Message::Welcome(Welcome {
                                    protocol_version: 2,
                                    max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
                                    max_in_flight: 16,
                                    rate_per_sec: 1000,
                                    burst: 1000,
                                    principal: "admin".into(),
                                })
                            }
                            Ok(Message::Ping) => Message::Pong,
                            Ok(Message::Command(_) | Message::KeyedCommand { .. }) => {
                                counted.fetch_add(1, Ordering::Relaxed);
                                match &fake {
                                    Fake::Follower(leader) => not_leader(leader.as_deref()),
                                    _ => {
                                        connection.close(0u32.into(), b"gone");
                                        return;
                                    }
                                }
                            }
                            other => panic!("the fake node got {other:?}"),
                        };
                        encode_frame_as(version, request_id, &answer, DEFAULT_MAX_FRAME_BYTES, &mut out).unwrap();
                    }
                    let _ = send.write_all(&out).await;
                    if let Fake::CloseAfterHello = fake {
                        // Let the Welcome arrive first: the client then sees a closed connection.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        connection.close(0u32.into(), b"restarting");
                        return;
                    }
                }
            });
        }
    });
    (addr, commands)
}

async fn cluster_client(daemon: &Daemon, addresses: &[String], failover_timeout: Duration) -> ClusterClient {
    let certs = daemon.certs();
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let mut config = ClusterConfig::new(addresses.to_vec());
    config.connect_timeout = Duration::from_secs(2);
    config.failover_timeout = failover_timeout;
    ClusterClient::connect(config, &read("ca.pem"), &read("admin.pem"), &read("admin.key")).await.unwrap()
}

fn create_asset(asset: u32) -> Command {
    Command::CreateAsset { asset: AssetId(asset), scale: 2 }
}

fn applied(delivered: Result<Delivered, ClientError>) -> u64 {
    match delivered {
        Ok(Delivered::Applied(outcome)) => {
            assert_eq!(outcome.rejected(), None, "{outcome:?}");
            outcome.seq
        }
        other => panic!("expected Applied, got {other:?}"),
    }
}

#[test]
fn commands_follow_the_leader_a_follower_names_and_queries_stay_on_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let leader = daemon.addr.to_string();
        let (follower, refused) = fake_node(&daemon.certs(), Fake::Follower(Some(leader.clone()))).await;
        let mut client = cluster_client(&daemon, &[follower.to_string(), leader.clone()], Duration::from_secs(5)).await;
        assert_eq!(client.address(), follower.to_string());
        // A query is answered by any node: no redirect.
        assert_eq!(client.request(&Message::Ping).await.unwrap(), Message::Pong);
        assert_eq!(client.address(), follower.to_string());

        assert_eq!(applied(client.command(create_asset(1)).await), 1);
        assert_eq!(refused.load(Ordering::Relaxed), 1, "the follower refused it once");
        assert_eq!((client.address(), client.resends()), (leader.as_str(), 1));
        // The next command goes straight to the leader.
        assert_eq!(applied(client.command(create_asset(2)).await), 2);
        assert_eq!((refused.load(Ordering::Relaxed), client.resends()), (1, 1));
        client.close().await;
    });
    daemon.stop();
}

#[test]
fn no_leader_known_sends_the_command_to_the_next_address() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let (electing, refused) = fake_node(&daemon.certs(), Fake::Follower(None)).await;
        let addresses = [electing.to_string(), daemon.addr.to_string()];
        let mut client = cluster_client(&daemon, &addresses, Duration::from_secs(5)).await;
        assert_eq!(applied(client.command(create_asset(1)).await), 1);
        assert_eq!((refused.load(Ordering::Relaxed), client.address()), (1, addresses[1].as_str()));
        client.close().await;
    });
    daemon.stop();
}

#[test]
fn a_connection_closed_between_commands_is_replaced_by_the_next_address() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let (closing, commands) = fake_node(&daemon.certs(), Fake::CloseAfterHello).await;
        let addresses = [closing.to_string(), daemon.addr.to_string()];
        let mut client = cluster_client(&daemon, &addresses, Duration::from_secs(5)).await;
        assert_eq!(client.address(), addresses[0]);
        tokio::time::timeout(Duration::from_secs(5), client.client().closed()).await.expect("the fake node closes");
        assert_eq!(applied(client.command(create_asset(1)).await), 1);
        assert_eq!(commands.load(Ordering::Relaxed), 0, "nothing was sent on the closed connection");
        assert_eq!(client.address(), addresses[1]);
        client.close().await;
    });
    daemon.stop();
}

#[test]
fn a_lost_answer_is_resent_only_with_a_request_key() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let (dropping, commands) = fake_node(&daemon.certs(), Fake::DropOnCommand).await;
        let addresses = [dropping.to_string(), daemon.addr.to_string()];
        let mut client = cluster_client(&daemon, &addresses, Duration::from_secs(5)).await;
        let sent = client.command(create_asset(1)).await;
        assert_eq!(commands.load(Ordering::Relaxed), 1);
        if client.keyed() {
            assert_eq!(applied(sent), 1, "resent with its key to the next node");
            assert_eq!(client.resends(), 1);
        } else {
            // Without a key a resend could apply it twice: the caller is told it is unknown.
            match sent {
                Err(ClientError::Io(e)) => assert!(e.contains("outcome is unknown"), "{e}"),
                other => panic!("expected a lost answer, got {other:?}"),
            }
            // The next command finds the closed connection and goes to the next address.
            assert_eq!(applied(client.command(create_asset(1)).await), 1);
        }
        assert_eq!(client.address(), addresses[1]);
        client.close().await;
    });
    daemon.stop();
}

#[test]
fn with_no_leader_anywhere_a_command_gives_up_at_the_failover_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let (electing, refused) = fake_node(&daemon.certs(), Fake::Follower(None)).await;
        let mut client = cluster_client(&daemon, &[electing.to_string()], Duration::from_millis(600)).await;
        let started = Instant::now();
        let gave_up = client.command(create_asset(1)).await;
        let waited = started.elapsed();
        match gave_up {
            Err(ClientError::Connect(e)) => {
                assert!(e.contains("failover timeout") && e.contains("leader=?"), "{e}")
            }
            other => panic!("expected to give up, got {other:?}"),
        }
        assert!(waited >= Duration::from_millis(600) && waited < Duration::from_secs(5), "{waited:?}");
        // Backoff 50, 100, 200, 400 (clamped): a handful of tries, not a spin.
        let tries = refused.load(Ordering::Relaxed);
        assert!((3..=8).contains(&tries), "{tries} tries");
    });
    daemon.stop();
}
