//! The floor of the end-to-end benchmark: a bare quinn echo over loopback with the gateway's TLS
//! setup (mutual TLS 1.3, `gateway::tls` configurations), one bidirectional stream, fixed-size
//! messages. The server runs on its own thread and current-thread runtime, so each round trip
//! crosses threads as a request to the daemon (another process) does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes per echoed message (a command frame is 21-80 bytes).
pub const ECHO_MESSAGE_BYTES: usize = 64;

/// The PEM files both ends of the echo use.
pub struct EchoCerts {
    pub ca: Vec<u8>,
    pub server_cert: Vec<u8>,
    pub server_key: Vec<u8>,
    pub client_cert: Vec<u8>,
    pub client_key: Vec<u8>,
}

impl EchoCerts {
    /// The server and admin certificates of a `seqd dev-certs` directory; when `dir` has no
    /// server key (certificates of a real CA), a development set written into `scratch`.
    pub fn load(dir: &Path, scratch: &Path) -> Result<EchoCerts, String> {
        let dir: PathBuf = if dir.join("server.key").exists() {
            dir.to_path_buf()
        } else {
            seqd::gateway::tls::dev_certs(scratch, true).map_err(|e| e.to_string())?.dir
        };
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
        Ok(EchoCerts {
            ca: read("ca.pem")?,
            server_cert: read("server.pem")?,
            server_key: read("server.key")?,
            client_cert: read("admin.pem")?,
            client_key: read("admin.key")?,
        })
    }

    fn server_config(&self) -> Result<quinn::ServerConfig, String> {
        seqd::gateway::tls::server_config(&self.ca, &self.server_cert, &self.server_key).map_err(|e| e.to_string())
    }

    fn client_config(&self) -> Result<quinn::ClientConfig, String> {
        seqd::gateway::tls::client_config(&self.ca, &self.client_cert, &self.client_key).map_err(|e| e.to_string())
    }
}

/// An echo server for one connection on its own thread.
pub struct EchoServer {
    pub addr: SocketAddr,
    thread: JoinHandle<Result<(), String>>,
}

impl EchoServer {
    pub fn start(certs: &EchoCerts) -> Result<EchoServer, String> {
        let config = certs.server_config()?;
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("quic-echo".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                runtime.block_on(async move {
                    let bound = quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("literal address"))
                        .and_then(|endpoint| endpoint.local_addr().map(|addr| (endpoint, addr)))
                        .map_err(|e| format!("echo listen: {e}"));
                    let _ = addr_tx.send(bound.as_ref().map(|(_, addr)| *addr).map_err(String::clone));
                    let (endpoint, _) = bound?;
                    let served = serve_one_connection(&endpoint).await;
                    endpoint.wait_idle().await;
                    served
                })
            })
            .map_err(|e| e.to_string())?;
        let addr = addr_rx.recv().map_err(|_| "the echo server did not start".to_string())??;
        Ok(EchoServer { addr, thread })
    }

    /// Waits for the server to finish (after the client closed).
    pub fn join(self) -> Result<(), String> {
        self.thread.join().map_err(|_| "the echo server panicked".to_string())?
    }
}

/// Echoes fixed-size messages on the first bidirectional stream of the first connection until
/// the client finishes the stream.
async fn serve_one_connection(endpoint: &quinn::Endpoint) -> Result<(), String> {
    let incoming = endpoint.accept().await.ok_or("the echo endpoint closed")?;
    let connection = incoming.await.map_err(|e| format!("echo handshake: {e}"))?;
    let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| format!("echo stream: {e}"))?;
    let mut message = [0u8; ECHO_MESSAGE_BYTES];
    while recv.read_exact(&mut message).await.is_ok() {
        send.write_all(&message).await.map_err(|e| format!("echo write: {e}"))?;
    }
    let _ = send.finish();
    connection.closed().await;
    Ok(())
}

/// The client end: sends a message and waits for it to come back.
pub struct EchoClient {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    message: [u8; ECHO_MESSAGE_BYTES],
}

impl EchoClient {
    pub async fn connect(addr: SocketAddr, certs: &EchoCerts) -> Result<EchoClient, String> {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("literal address")).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(certs.client_config()?);
        let connecting = endpoint.connect(addr, seqd::gateway::tls::SERVER_NAME).map_err(|e| e.to_string())?;
        let connection = connecting.await.map_err(|e| format!("echo connect: {e}"))?;
        let (send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        Ok(EchoClient { endpoint, connection, send, recv, message: [7u8; ECHO_MESSAGE_BYTES] })
    }

    pub async fn round_trip(&mut self) -> Result<(), String> {
        self.send.write_all(&self.message).await.map_err(|e| format!("echo send: {e}"))?;
        self.recv.read_exact(&mut self.message).await.map_err(|e| format!("echo receive: {e}"))
    }

    pub async fn close(mut self) {
        let _ = self.send.finish();
        let mut rest = [0u8; 1];
        let _ = self.recv.read(&mut rest).await; // the server finishes its side in turn
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
