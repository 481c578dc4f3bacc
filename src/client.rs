//! The Rust client library: connects over QUIC with a client certificate, says Hello, and sends
//! commands and queries, matching answers to requests by request id. Pushes (request id 0)
//! that arrive meanwhile are kept for `take_pushes`.
//!
//! Market data: `subscribe` returns the snapshot; the updates then arrive as pushes (read them
//! with `next_message`, or `take_pushes` after other requests) and keep an
//! [`L2Book`](crate::protocol::L2Book).
//!
//! Clusters: [`ClusterClient`] (`client/cluster.rs`) takes several node addresses and follows
//! the leader, on the policy of `client/follow.rs`.

pub mod cluster;
pub mod follow;

pub use cluster::{random_request_key, ClusterClient, ClusterConfig, Delivered};

use crate::engine::{AssetView, Command, Event, Seq, SymbolId, SymbolView, Withdrawal};
use crate::gateway::tls;
use crate::protocol::{
    encode_frame_as, DepthBook, FrameDecoder, Message, Welcome, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN,
};
use std::net::SocketAddr;

/// Most bytes taken from the stream at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Io(String),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The gateway or the engine said no: a `GatewayError` code (9xx) or a `RejectReason`
    /// code (1xx-4xx).
    #[error("refused with code {code}: {message}")]
    Refused { code: u16, message: String },
}

/// A command's outcome: its sequence and its events (a `Rejected` event if the engine said no).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub seq: Seq,
    pub events: Vec<Event>,
}

impl Outcome {
    /// The engine's rejection reason code, if the command was rejected.
    pub fn rejected(&self) -> Option<u16> {
        self.events.iter().find_map(|e| match e {
            Event::Rejected { reason } => Some(reason.code()),
            _ => None,
        })
    }
}

pub struct Client {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    /// Bytes read from the stream; `received[received_at..]` are not decoded yet.
    received: Vec<u8>,
    received_at: usize,
    next_request_id: u64,
    /// Protocol version of the frames this client sends: 1 (any server reads it) until the
    /// `Welcome` names the chosen one.
    version: u8,
    pushes: Vec<Message>,
    pub welcome: Welcome,
}

impl Client {
    /// Connects with the given PEM files and completes the Hello/Welcome handshake.
    pub async fn connect(
        addr: SocketAddr,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Client, ClientError> {
        let config = tls::client_config(ca_pem, cert_pem, key_pem).map_err(|e| ClientError::Connect(e.to_string()))?;
        Client::connect_with(addr, config).await
    }

    /// Connects with a ready quinn client configuration, verifying that the server's
    /// certificate names [`tls::SERVER_NAME`] (`localhost`, as the development certificates do).
    pub async fn connect_with(addr: SocketAddr, config: quinn::ClientConfig) -> Result<Client, ClientError> {
        Client::connect_named(addr, tls::SERVER_NAME, config).await
    }

    /// Connects to `addr`, verifying that the server's certificate names `server_name` (a DNS
    /// name or an IP address in its subject alternative names), then says Hello.
    pub async fn connect_named(
        addr: SocketAddr,
        server_name: &str,
        config: quinn::ClientConfig,
    ) -> Result<Client, ClientError> {
        let mut client = Client::connect_without_hello(addr, server_name, config).await?;
        let hello_id = client.send(&Message::Hello { protocol_version: PROTOCOL_VERSION }).await?;
        match client.next_answer(hello_id).await? {
            Message::Welcome(welcome) => {
                // Every frame after the handshake is in the version the server chose.
                client.version = welcome.protocol_version;
                client.welcome = welcome;
            }
            other => return Err(ClientError::Protocol(format!("expected Welcome, got {other:?}"))),
        }
        Ok(client)
    }

    /// Connects and opens the stream but sends nothing: the caller does the handshake (for
    /// tests of the handshake itself). `welcome` stays empty.
    pub async fn connect_without_hello(
        addr: SocketAddr,
        server_name: &str,
        config: quinn::ClientConfig,
    ) -> Result<Client, ClientError> {
        let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("literal address");
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint.connect(addr, server_name).map_err(|e| ClientError::Connect(e.to_string()))?;
        let connection = connecting.await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let (send, recv) = connection.open_bi().await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let client = Client {
            _endpoint: endpoint,
            connection,
            send,
            recv,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES),
            received: Vec::new(),
            received_at: 0,
            next_request_id: 1,
            version: PROTOCOL_VERSION_MIN,
            pushes: Vec::new(),
            welcome: Welcome {
                protocol_version: 0,
                max_frame_bytes: 0,
                max_in_flight: 0,
                rate_per_sec: 0,
                burst: 0,
                principal: String::new(),
            },
        };
        Ok(client)
    }

    /// Sends a message under a new request id and returns the id.
    pub async fn send(&mut self, message: &Message) -> Result<u64, ClientError> {
        self.send_batch(std::slice::from_ref(message)).await
    }

    /// Sends messages in one write, under consecutive new request ids; returns the first id.
    /// With `next_message`, this is the pipelined API: send many, then read the answers.
    pub async fn send_batch(&mut self, messages: &[Message]) -> Result<u64, ClientError> {
        let first_request_id = self.next_request_id;
        let mut frames = Vec::with_capacity(messages.len() * 96);
        for message in messages {
            encode_frame_as(self.version, self.next_request_id, message, DEFAULT_MAX_FRAME_BYTES, &mut frames)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            self.next_request_id += 1;
        }
        self.send_raw(&frames).await?;
        Ok(first_request_id)
    }

    /// Writes bytes as they are (for tests of malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.send.write_all(bytes).await.map_err(|e| ClientError::Io(e.to_string()))
    }

    /// The next message from the server, with its request id.
    pub async fn next_message(&mut self) -> Result<(u64, Message), ClientError> {
        loop {
            if let Some(decoded) = self.decode_buffered()? {
                return Ok(decoded);
            }
            self.read_more().await?;
        }
    }

    /// Whether bytes already read are waiting to be decoded (`next_message` may then return
    /// without waiting for the network).
    pub fn has_buffered_input(&self) -> bool {
        self.received_at < self.received.len()
    }

    /// Decodes the next message from bytes already read, if they hold a whole frame.
    fn decode_buffered(&mut self) -> Result<Option<(u64, Message)>, ClientError> {
        let mut input = &self.received[self.received_at..];
        let before = input.len();
        let decoded = match self.decoder.decode(&mut input) {
            Ok(Some(frame)) => Some((frame.request_id, Message::decode_from_server(&frame))),
            Ok(None) => None,
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        self.received_at += before - input.len();
        match decoded {
            Some((request_id, message)) => {
                message.map(|m| Some((request_id, m))).map_err(|e| ClientError::Protocol(e.to_string()))
            }
            None => Ok(None),
        }
    }

    /// Reads the next chunk of the stream (the decoder keeps any partial frame itself, so
    /// everything read before has been consumed).
    async fn read_more(&mut self) -> Result<(), ClientError> {
        match self.recv.read_chunk(READ_CHUNK_BYTES, true).await {
            Ok(Some(chunk)) => {
                self.received.clear();
                self.received.extend_from_slice(&chunk.bytes);
                self.received_at = 0;
                Ok(())
            }
            Ok(None) => Err(ClientError::Io("the server closed the stream".into())),
            Err(e) => Err(ClientError::Io(e.to_string())),
        }
    }

    /// The next message answering `request_id`; pushes that arrive first are kept.
    async fn next_answer(&mut self, request_id: u64) -> Result<Message, ClientError> {
        loop {
            let (id, message) = self.next_message().await?;
            if id == request_id {
                if let Message::Error { code, message } = message {
                    return Err(ClientError::Refused { code, message });
                }
                return Ok(message);
            }
            if id == 0 {
                self.pushes.push(message);
            }
        }
    }

    /// Sends a command and waits for its outcome (sent once the command is durable).
    pub async fn command(&mut self, command: Command) -> Result<Outcome, ClientError> {
        self.command_message(&Message::Command(command)).await
    }

    /// `command` sent with a request key (protocol version 2; `key` must not be 0): the engine
    /// applies it at most once per key while it remembers the key, so after a lost answer it
    /// is safe to call again with the same key. A repeat of a command that was applied is
    /// answered `Rejected { DuplicateRequest }` (111). Choose keys at random (PROTOCOL.md,
    /// "Request keys and retries").
    pub async fn command_keyed(&mut self, command: Command, key: u64) -> Result<Outcome, ClientError> {
        self.command_message(&Message::KeyedCommand { request_key: key, command }).await
    }

    /// Sends `Command` or `KeyedCommand` and collects its answer: `Accepted`, then `Events`.
    async fn command_message(&mut self, message: &Message) -> Result<Outcome, ClientError> {
        let request_id = self.send(message).await?;
        let seq = match self.next_answer(request_id).await? {
            Message::Accepted { seq } => seq,
            other => return Err(ClientError::Protocol(format!("expected Accepted, got {other:?}"))),
        };
        let mut events = Vec::new();
        loop {
            match self.next_answer(request_id).await? {
                Message::Events { seq: events_seq, more, events: part } if events_seq == seq => {
                    events.extend(part);
                    if !more {
                        return Ok(Outcome { seq, events });
                    }
                }
                other => return Err(ClientError::Protocol(format!("expected Events, got {other:?}"))),
            }
        }
    }

    /// Sends a query (or Ping) and returns its answer (list answers split over several frames
    /// arrive as several messages; this returns the first, which is all of a small answer).
    pub async fn request(&mut self, message: &Message) -> Result<Message, ClientError> {
        let request_id = self.send(message).await?;
        self.next_answer(request_id).await
    }

    /// Sends a query and returns its whole answer: a list split over several frames is
    /// reassembled into one message.
    pub async fn request_all(&mut self, message: &Message) -> Result<Message, ClientError> {
        let request_id = self.send(message).await?;
        let mut answer = self.next_answer(request_id).await?;
        while answer.more() {
            let part = self.next_answer(request_id).await?;
            answer.continue_with(part).map_err(|part| ClientError::Protocol(format!("unexpected {part:?}")))?;
        }
        Ok(answer)
    }

    /// Subscribes to a symbol's market data and returns the snapshot (its `book_seq` is the
    /// `md_seq` it reflects). `MarketTrade` and `DepthUpdate` pushes follow.
    pub async fn subscribe(&mut self, symbol: SymbolId) -> Result<DepthBook, ClientError> {
        match self.request_all(&Message::Subscribe { symbol }).await? {
            Message::DepthSnapshot(book) => Ok(book),
            other => Err(ClientError::Protocol(format!("expected DepthSnapshot, got {other:?}"))),
        }
    }

    /// Ends a subscription; market data of the symbol received before the answer is kept with
    /// the pushes, and none follows it.
    pub async fn unsubscribe(&mut self, symbol: SymbolId) -> Result<(), ClientError> {
        match self.request(&Message::Unsubscribe { symbol }).await? {
            Message::Unsubscribed { symbol: s } if s == symbol => Ok(()),
            other => Err(ClientError::Protocol(format!("expected Unsubscribed, got {other:?}"))),
        }
    }

    /// Every asset with its scale and code (protocol version 2).
    pub async fn list_assets(&mut self) -> Result<Vec<AssetView>, ClientError> {
        match self.request_all(&Message::ListAssets).await? {
            Message::Assets { assets, .. } => Ok(assets),
            other => Err(ClientError::Protocol(format!("expected Assets, got {other:?}"))),
        }
    }

    /// Every symbol with its spec, status and code (protocol version 2).
    pub async fn list_symbols(&mut self) -> Result<Vec<SymbolView>, ClientError> {
        match self.request_all(&Message::ListSymbols).await? {
            Message::Symbols { symbols, .. } => Ok(symbols),
            other => Err(ClientError::Protocol(format!("expected Symbols, got {other:?}"))),
        }
    }

    /// A withdrawal's state (protocol version 2); `Refused` 940 when it is unknown, forgotten
    /// (old and decided) or of an account the principal does not see.
    pub async fn withdrawal(&mut self, withdrawal_id: u64) -> Result<Withdrawal, ClientError> {
        match self.request(&Message::QueryWithdrawal { withdrawal_id }).await? {
            Message::WithdrawalInfo { withdrawal, .. } => Ok(withdrawal),
            other => Err(ClientError::Protocol(format!("expected WithdrawalInfo, got {other:?}"))),
        }
    }

    /// Pushes received so far (execution reports and ledger entries of visible accounts, and
    /// market data).
    pub fn take_pushes(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.pushes)
    }

    /// Closes the connection and waits until the server has been told, so it frees the
    /// connection at once instead of at its idle timeout.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"bye");
        self._endpoint.wait_idle().await;
    }

    /// Why the connection is closed (by either side, or lost), if it is.
    pub fn close_reason(&self) -> Option<quinn::ConnectionError> {
        self.connection.close_reason()
    }

    /// Waits until the connection is closed by the server; returns the close reason.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.connection.closed().await
    }
}
