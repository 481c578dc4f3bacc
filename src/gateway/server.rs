//! The QUIC server: one task per connection reads frames, authorizes, applies the connection's
//! limits and publishes into the input ring; the responder routes each result back to its
//! connection and pushes to every other connection what its principal may see of the command's
//! events. Both pass `visibility`, the one filter of what a principal receives. Public market
//! data (`Subscribe`) is served from the responder's [`MarketFeed`] on a second, lossy queue per
//! connection (see `feed.rs`).
//!
//! A connection opens one bidirectional stream and speaks `docs/PROTOCOL.md` on it. Framing
//! errors close the connection with the error's code; a bad message is answered with `Error`
//! and the connection goes on. A slow reader whose outbound queue fills is disconnected rather
//! than allowed to slow the responder.

use super::clock::MonotonicClock;
use super::feed::{MarketFeed, MarketFrames, SubscribeError, MARKET_QUEUE};
use super::grants::{AccountDirectory, Grants};
use super::refusals::{RefusalCause, Refusals};
use super::tls;
use super::visibility::{self, Audience, Visible};
use crate::config::PrincipalSection;
use crate::engine::{Engine, Seq};
use crate::pipeline::{Busy, Origin, OutputSlot, Query, QueryAnswer, Responder, SubmitError, Submitter};
use crate::protocol::{
    encode_frame_as, encode_frames_as, AssetTotal, Authority, ConnectionLimits, DepthBook, FrameDecoder, GatewayError,
    Handshake, LimitsConfig, Message, Step, Welcome, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

/// Outbound messages a connection may have queued before it counts as too slow.
const OUTBOUND_QUEUE: usize = 8_192;
/// Bytes read from a stream at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct GatewaySettings {
    pub max_frame_bytes: u32,
    pub limits: LimitsConfig,
    pub principals: Vec<PrincipalSection>,
}

/// What a connection's writer task is asked to send.
enum Outbound {
    /// Frames already encoded by the reader (Welcome, Pong, errors).
    Frames(Vec<u8>),
    /// A result from the pipeline: the answer to one of this connection's requests
    /// (`request_id` != 0) or a push (`request_id` == 0). `events` are already filtered for this
    /// connection's principal; a query's answer is filtered by `messages_for`. `book_seq`: the
    /// symbol's `md_seq` when the answer is a depth.
    Result {
        request_id: u64,
        seq: Seq,
        events: Visible,
        query: Option<Query>,
        answer: Option<QueryAnswer>,
        book_seq: u64,
    },
    /// A command that will never be answered by the pipeline (a cluster node lost its
    /// leadership with it in flight): `message` is the error sent in place of the answer.
    Refused { request_id: u64, message: Message },
}

struct Route {
    tx: mpsc::Sender<Outbound>,
    grants: Grants,
}

/// Connection id -> where its results go (written on connect and disconnect only), and the
/// market-data subscriptions.
#[derive(Default)]
pub struct Router {
    routes: RwLock<FxHashMap<u64, Route>>,
    pub feed: MarketFeed,
}

impl Router {
    fn insert(&self, connection: u64, tx: mpsc::Sender<Outbound>, grants: Grants) {
        self.routes.write().expect("router lock").insert(connection, Route { tx, grants });
    }

    fn remove(&self, connection: u64) {
        self.routes.write().expect("router lock").remove(&connection);
    }

    /// Answers a command the pipeline will never answer with `message` (an `Error`) instead,
    /// and frees its in-flight place. A connection that is gone or full is left alone: the
    /// client sees the connection end or times out, as for any lost answer.
    pub fn refuse(&self, origin: Origin, message: Message) {
        let routes = self.routes.read().expect("router lock");
        if let Some(route) = routes.get(&origin.connection) {
            let _ = route.tx.try_send(Outbound::Refused { request_id: origin.request_id, message });
        }
    }

    pub fn connections(&self) -> usize {
        self.routes.read().expect("router lock").len()
    }

    /// Sends a result to its origin and pushes what other connections may see, each filtered by
    /// `visibility::events_for` for its principal. Never blocks: a full queue disconnects that
    /// connection. `directory` must already follow `slot`'s events (a new account is visible in
    /// the command that created it).
    fn deliver(&self, slot: &OutputSlot, directory: &AccountDirectory) {
        let mut too_slow = Vec::new();
        {
            let view = directory.view();
            let routes = self.routes.read().expect("router lock");
            if let Some(route) = routes.get(&slot.origin.connection) {
                let book_seq = match slot.query {
                    Some(Query::Depth { symbol, .. }) => self.feed.md_seq(symbol),
                    _ => 0,
                };
                let result = Outbound::Result {
                    request_id: slot.origin.request_id,
                    seq: slot.seq,
                    events: visibility::events_for(&route.grants, &view, &slot.events, Audience::Sender),
                    query: slot.query,
                    answer: slot.answer.clone(),
                    book_seq,
                };
                if route.tx.try_send(result).is_err() {
                    too_slow.push(slot.origin.connection);
                }
            }
            if slot.answer.is_none() && !slot.events.is_empty() {
                for (&connection, route) in routes.iter() {
                    if connection == slot.origin.connection {
                        continue;
                    }
                    let visible = visibility::events_for(&route.grants, &view, &slot.events, Audience::Observer);
                    if visible.is_empty() {
                        continue;
                    }
                    let push = Outbound::Result {
                        request_id: 0,
                        seq: slot.seq,
                        events: visible,
                        query: None,
                        answer: None,
                        book_seq: 0,
                    };
                    if route.tx.try_send(push).is_err() {
                        too_slow.push(connection);
                    }
                }
            }
        }
        for connection in too_slow {
            tracing::warn!(connection, "outbound queue full: disconnecting a slow client");
            self.remove(connection);
        }
    }
}

/// The pipeline's responder: keeps the account-tree mirror and the public books current, then
/// routes.
pub struct GatewayResponder {
    pub router: Arc<Router>,
    pub directory: Arc<AccountDirectory>,
}

impl Responder for GatewayResponder {
    fn recovered(&mut self, engine: &Engine) {
        self.router.feed.seed(engine);
    }

    fn deliver(&mut self, result: &OutputSlot) {
        self.directory.observe(&result.events);
        // A query has no events, but gives a stale subscriber its chance to resynchronise.
        self.router.feed.observe(result.timestamp_ns, &result.events);
        self.router.deliver(result, &self.directory);
    }
}

/// Everything connection tasks share.
pub struct Gateway {
    pub settings: GatewaySettings,
    pub router: Arc<Router>,
    pub directory: Arc<AccountDirectory>,
    /// Connections refused before the protocol started (TLS, unknown principals): counters
    /// for the metrics endpoint and a rate-limited warn log.
    pub refusals: Arc<Refusals>,
    /// The flow-control clock ([`MonotonicClock`]), shared by every connection.
    clock: MonotonicClock,
    submitter: Mutex<Option<Submitter>>,
    next_connection: AtomicU64,
}

impl Gateway {
    pub fn new(
        settings: GatewaySettings,
        router: Arc<Router>,
        directory: Arc<AccountDirectory>,
        submitter: Submitter,
    ) -> Gateway {
        Gateway {
            settings,
            router,
            directory,
            refusals: Arc::new(Refusals::default()),
            clock: MonotonicClock::start(),
            submitter: Mutex::new(Some(submitter)),
            next_connection: AtomicU64::new(1),
        }
    }

    /// Stops handing out submitters; connections that end drop theirs, and the pipeline can
    /// then drain and stop.
    pub fn stop_accepting(&self) {
        self.submitter.lock().expect("submitter lock").take();
    }

    fn submitter(&self) -> Option<Submitter> {
        self.submitter.lock().expect("submitter lock").clone()
    }

    /// Accepts connections until the endpoint is closed.
    pub async fn serve(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let gateway = self.clone();
            tokio::spawn(async move {
                if let Err(e) = gateway.handle(incoming).await {
                    tracing::debug!("connection ended: {e}");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, incoming: quinn::Incoming) -> Result<(), String> {
        let peer = incoming.remote_address();
        let connection = match incoming.await {
            Ok(connection) => connection,
            Err(e) => {
                let reason = format!("TLS/QUIC handshake failed: {e}");
                self.refusals.refuse(RefusalCause::of_handshake_error(&e), peer, &reason, self.clock.now_ns());
                return Err(reason);
            }
        };
        let principal = match tls::principal_of(&connection) {
            Ok(principal) => principal,
            Err(e) => {
                let reason = format!("unusable client certificate: {e}");
                self.refusals.refuse(RefusalCause::BadCertificate, peer, &reason, self.clock.now_ns());
                connection.close(u32::from(GatewayError::Unauthorized.code()).into(), b"unusable certificate");
                return Err(reason);
            }
        };
        let Some(grants) = Grants::of(&principal, &self.settings.principals) else {
            let reason = format!("principal {principal:?} is not configured");
            self.refusals.refuse(RefusalCause::UnknownPrincipal, peer, &reason, self.clock.now_ns());
            connection.close(u32::from(GatewayError::Unauthorized.code()).into(), b"unknown principal");
            return Err(reason);
        };
        let Some(submitter) = self.submitter() else {
            connection.close(u32::from(GatewayError::ShuttingDown.code()).into(), b"shutting down");
            return Ok(());
        };
        let (send, recv) = connection.accept_bi().await.map_err(|e| format!("stream: {e}"))?;
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (market_tx, market_rx) = mpsc::channel(MARKET_QUEUE);
        self.router.insert(id, tx.clone(), grants.clone());
        tracing::debug!(connection = id, principal = %grants.principal, remote = %peer, "connected");
        let limits = Arc::new(Mutex::new(ConnectionLimits::new(self.settings.limits, self.clock.now_ns())));
        // Version 1 until `Welcome` chooses one: a frame before it is read by any client.
        let version = Arc::new(AtomicU8::new(PROTOCOL_VERSION_MIN));
        let writer = tokio::spawn(write_loop(
            send,
            rx,
            market_rx,
            Writer {
                version: version.clone(),
                max_frame_bytes: self.settings.max_frame_bytes,
                grants: grants.clone(),
                directory: self.directory.clone(),
                limits: limits.clone(),
            },
        ));
        let mut session = Session {
            id,
            grants,
            submitter,
            tx,
            market_tx,
            limits,
            gateway: self.clone(),
            handshake: Handshake::default(),
            version,
        };
        let result = session.read_loop(recv).await;
        self.router.remove(id);
        self.router.feed.remove_connection(id);
        drop(session);
        let _ = writer.await;
        if let Err(code) = &result {
            connection.close(u32::from(*code).into(), b"protocol error");
        }
        let reason = match (&result, connection.close_reason()) {
            (Err(code), _) => format!("closed by the gateway with code {code}"),
            (Ok(()), Some(reason)) => reason.to_string(),
            (Ok(()), None) => "the client finished its stream".to_string(),
        };
        tracing::debug!(connection = id, %reason, "disconnected");
        result.map_err(|code| format!("closed with code {code}"))
    }
}

struct Session {
    id: u64,
    grants: Grants,
    submitter: Submitter,
    tx: mpsc::Sender<Outbound>,
    /// This connection's market-data queue (snapshots, updates, `Unsubscribed`), in order.
    market_tx: mpsc::Sender<MarketFrames>,
    limits: Arc<Mutex<ConnectionLimits>>,
    gateway: Arc<Gateway>,
    handshake: Handshake,
    /// The protocol version of every frame this connection is sent (shared with its writer):
    /// set once, by the `Welcome`.
    version: Arc<AtomicU8>,
}

impl Session {
    fn version(&self) -> u8 {
        self.version.load(Ordering::Relaxed)
    }

    /// Reads frames until the stream ends. `Err(code)` when the connection must be closed.
    async fn read_loop(&mut self, mut recv: quinn::RecvStream) -> Result<(), u16> {
        let max_frame_bytes = self.gateway.settings.max_frame_bytes;
        let mut decoder = FrameDecoder::new(max_frame_bytes);
        let mut buffer = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let read = match recv.read(&mut buffer).await {
                Ok(Some(n)) => n,
                Ok(None) | Err(_) => return decoder.finish().map_err(|e| e.gateway_error().code()),
            };
            let mut chunk = &buffer[..read];
            let mut out = Vec::new();
            loop {
                let frame = match decoder.decode(&mut chunk) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(lost) => {
                        self.send_error(0, lost.gateway_error(), &lost.to_string()).await;
                        return Err(lost.gateway_error().code());
                    }
                };
                let request_id = frame.request_id;
                let (reply, close) =
                    if let Some((error, detail)) = self.handshake.check_frame_version(frame.version, self.version()) {
                        (Some(Message::error(error, &detail)), Some(error))
                    } else {
                        match Message::decode_from_client(&frame) {
                            Ok(message) => self.on_message(request_id, message).await,
                            Err(bad) => {
                                let close = bad.closes_connection().then(|| bad.gateway_error());
                                (Some(Message::error(bad.gateway_error(), &bad.to_string())), close)
                            }
                        }
                    };
                if let Some(reply) = reply {
                    let _ = encode_frames_as(self.version(), request_id, &reply, max_frame_bytes, &mut out);
                }
                if let Some(error) = close {
                    // The answers so far, this Error last, then the close (PROTOCOL.md §14).
                    let _ = self.tx.send(Outbound::Frames(out)).await;
                    return Err(error.code());
                }
            }
            if !out.is_empty() && self.tx.send(Outbound::Frames(out)).await.is_err() {
                return Ok(()); // the writer is gone: the connection is closing
            }
        }
    }

    /// Handles one well-formed message: an immediate reply, if any, and whether the connection
    /// must then be closed with that error. Commands and queries are answered later through
    /// the responder, subscriptions on the market-data queue.
    async fn on_message(&mut self, request_id: u64, message: Message) -> (Option<Message>, Option<GatewayError>) {
        let mut handshake = self.handshake;
        let step = handshake.on_message(request_id, message, || self.welcome());
        self.handshake = handshake;
        let message = match step {
            Step::Answer(Message::Welcome(welcome)) => {
                // The Welcome and every frame after it are in the chosen version.
                self.version.store(welcome.protocol_version, Ordering::Relaxed);
                return (Some(Message::Welcome(welcome)), None);
            }
            Step::Answer(answer) => return (Some(answer), None),
            Step::Close(error, detail) => return (Some(Message::error(error, detail)), Some(error)),
            Step::Request(message) => message,
        };
        (self.on_request(request_id, message).await, None)
    }

    /// A request after the handshake, with a non-zero id.
    async fn on_request(&mut self, request_id: u64, message: Message) -> Option<Message> {
        let authority = Authority::of_message(&message);
        if let Err(refused) = self.grants.check(authority, &self.gateway.directory) {
            return Some(Message::error(refused, ""));
        }
        let origin = Origin { connection: self.id, request_id };
        let now_ns = self.gateway.clock.now_ns();
        // A keyed command is a command (same grants, same limits) carrying the client's key.
        match message {
            Message::Command(command) => return self.submit(request_id, command, 0, origin, now_ns),
            Message::KeyedCommand { request_key, command } => {
                return self.submit(request_id, command, request_key, origin, now_ns)
            }
            _ => {}
        }
        // Every other request costs a token (PROTOCOL.md §10), pings included.
        if let Err(refused) = self.limits.lock().expect("limits lock").admit_request(request_id, now_ns) {
            return Some(Message::error(refused, refusal_detail(refused)));
        }
        match message {
            Message::Ping => Some(Message::Pong),
            Message::Subscribe { symbol } => {
                let max_frame_bytes = self.gateway.settings.max_frame_bytes;
                match self.gateway.router.feed.subscribe(
                    self.id,
                    request_id,
                    symbol,
                    &self.market_tx,
                    max_frame_bytes,
                    self.version(),
                ) {
                    Ok(()) => None, // the snapshot is queued
                    Err(SubscribeError::UnknownSymbol) => {
                        Some(Message::error(GatewayError::NotFound, "unknown symbol"))
                    }
                    Err(SubscribeError::Busy) => {
                        Some(Message::error(GatewayError::Busy, "market-data queue full; retry after a pause"))
                    }
                }
            }
            Message::Unsubscribe { symbol } => {
                self.gateway.router.feed.unsubscribe(self.id, symbol);
                // Behind every update of the symbol already queued, so none follows it.
                let mut frame = Vec::new();
                encode_frame_as(
                    self.version(),
                    request_id,
                    &Message::Unsubscribed { symbol },
                    self.gateway.settings.max_frame_bytes,
                    &mut frame,
                )
                .expect("Unsubscribed fits a frame");
                let _ = self.market_tx.send(frame.into()).await;
                None
            }
            other => match query_of(&other) {
                Some(query) => match self.submitter.try_query(query, origin, unix_time_ns()) {
                    Ok(()) => None,
                    Err(Busy) => Some(Message::error(GatewayError::Busy, "input ring full")),
                },
                None => Some(Message::error(GatewayError::UnknownMessageType, "")),
            },
        }
    }

    /// Admits a command (a new request id, in-flight and rate limits) and publishes it with its
    /// request key (0: none).
    fn submit(
        &mut self,
        request_id: u64,
        command: crate::engine::Command,
        request_key: u64,
        origin: Origin,
        now_ns: u64,
    ) -> Option<Message> {
        if let Err(refused) = self.limits.lock().expect("limits lock").admit_command(request_id, now_ns) {
            return Some(Message::error(refused, refusal_detail(refused)));
        }
        let refused = match self.submitter.try_submit_keyed(command, request_key, origin, unix_time_ns()) {
            Ok(()) => return None,
            Err(SubmitError::Busy) => Message::error(GatewayError::Busy, "input ring full"),
            Err(SubmitError::NotLeader { leader_client_address }) => not_leader(leader_client_address.as_deref()),
        };
        self.limits.lock().expect("limits lock").command_answered(request_id);
        Some(refused)
    }

    /// This connection's `Welcome` (the handshake sets the version it chose).
    fn welcome(&self) -> Welcome {
        let limits = self.gateway.settings.limits;
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            max_frame_bytes: self.gateway.settings.max_frame_bytes,
            max_in_flight: limits.max_in_flight,
            rate_per_sec: limits.rate_per_sec,
            burst: limits.burst,
            principal: self.grants.principal.clone(),
        }
    }

    async fn send_error(&self, request_id: u64, error: GatewayError, detail: &str) {
        let mut out = Vec::new();
        let max_frame_bytes = self.gateway.settings.max_frame_bytes;
        if encode_frame_as(self.version(), request_id, &Message::error(error, detail), max_frame_bytes, &mut out)
            .is_ok()
        {
            let _ = self.tx.send(Outbound::Frames(out)).await;
        }
    }
}

fn query_of(message: &Message) -> Option<Query> {
    Some(match *message {
        Message::QueryBalances { account } => Query::Balances { account },
        Message::QuerySubtreeTotals { account } => Query::SubtreeTotals { account },
        Message::QueryOrder { order_id } => Query::Order { order_id },
        Message::QueryOpenOrders { account } => Query::OpenOrders { account },
        Message::QueryDepth { symbol, levels } => Query::Depth { symbol, levels },
        Message::ListAssets => Query::Assets,
        Message::ListSymbols => Query::Symbols,
        Message::QueryWithdrawal { withdrawal_id } => Query::Withdrawal { withdrawal_id },
        _ => return None,
    })
}

/// Turns a pipeline result into the messages the client gets: a command's (already filtered)
/// events, or a query's answer as `visibility::answer_for` lets the principal have it.
fn messages_for(
    seq: Seq,
    events: Visible,
    query: Option<Query>,
    answer: Option<QueryAnswer>,
    book_seq: u64,
    grants: &Grants,
    directory: &AccountDirectory,
) -> Vec<Message> {
    let Some(answer) = answer else {
        return vec![Message::Accepted { seq }, Message::Events { seq, more: false, events: events.into_vec() }];
    };
    let Some(query) = query else {
        return vec![Message::error(GatewayError::NotFound, "")];
    };
    let answer = match visibility::answer_for(grants, &directory.view(), &query, answer) {
        Ok(answer) => answer,
        Err(refused) => return vec![Message::error(refused, "")],
    };
    match (query, answer) {
        (Query::Balances { account }, QueryAnswer::Balances(Some(balances))) => {
            vec![Message::Balances { account, seq, more: false, balances }]
        }
        (Query::SubtreeTotals { account }, QueryAnswer::SubtreeTotals(Some(totals))) => {
            let totals = totals.into_iter().map(|(asset, total)| AssetTotal { asset, total }).collect();
            vec![Message::SubtreeTotals { account, seq, more: false, totals }]
        }
        (_, QueryAnswer::Order(Some(order))) => vec![Message::OrderInfo { seq, order }],
        (Query::OpenOrders { account }, QueryAnswer::OpenOrders(Some(orders))) => {
            vec![Message::OpenOrders { account, seq, more: false, orders }]
        }
        (Query::Depth { symbol, .. }, QueryAnswer::Depth(Some((bids, asks)))) => {
            vec![Message::Depth(DepthBook { symbol, book_seq, more: false, bids, asks })]
        }
        (_, QueryAnswer::Assets(assets)) => vec![Message::Assets { seq, more: false, assets }],
        (_, QueryAnswer::Symbols(symbols)) => vec![Message::Symbols { seq, more: false, symbols }],
        (Query::Withdrawal { withdrawal_id }, QueryAnswer::Withdrawal(Some(withdrawal))) => {
            vec![Message::WithdrawalInfo { seq, withdrawal_id, withdrawal }]
        }
        // `answer_for` passes only answers that match their query and exist.
        _ => vec![Message::error(GatewayError::NotFound, "")],
    }
}

/// Writes a connection's answers and pushes, and its market data, until the answers' queue
/// closes (the connection is over). Answers go first when both queues have something.
/// What a connection's writer encodes answers with.
struct Writer {
    /// The connection's protocol version (set by the reader at `Welcome`).
    version: Arc<AtomicU8>,
    max_frame_bytes: u32,
    grants: Grants,
    directory: Arc<AccountDirectory>,
    limits: Arc<Mutex<ConnectionLimits>>,
}

async fn write_loop(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Outbound>,
    mut market_rx: mpsc::Receiver<MarketFrames>,
    writer: Writer,
) {
    let Writer { version, max_frame_bytes, grants, directory, limits } = writer;
    let mut out = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut market_open = true;
    loop {
        let outbound = tokio::select! {
            biased;
            outbound = rx.recv() => match outbound {
                Some(outbound) => outbound,
                None => break,
            },
            frames = market_rx.recv(), if market_open => {
                match frames {
                    Some(frames) => {
                        if send.write_all(&frames).await.is_err() {
                            return;
                        }
                    }
                    None => market_open = false,
                }
                continue;
            }
        };
        out.clear();
        match outbound {
            Outbound::Frames(bytes) => out = bytes,
            Outbound::Refused { request_id, message } => {
                limits.lock().expect("limits lock").command_answered(request_id);
                let version = version.load(Ordering::Relaxed);
                if let Err(e) = encode_frames_as(version, request_id, &message, max_frame_bytes, &mut out) {
                    tracing::error!("cannot encode a refusal: {e}");
                }
            }
            Outbound::Result { request_id, seq, events, query, answer, book_seq } => {
                if request_id != 0 && answer.is_none() {
                    limits.lock().expect("limits lock").command_answered(request_id);
                }
                // A push (request id 0) is the events alone (PROTOCOL.md §9); an answer to this
                // connection's command is `Accepted` then its `Events`.
                let messages = if request_id == 0 {
                    vec![Message::Events { seq, more: false, events: events.into_vec() }]
                } else {
                    messages_for(seq, events, query, answer, book_seq, &grants, &directory)
                };
                let version = version.load(Ordering::Relaxed);
                for message in messages {
                    if let Err(e) = encode_frames_as(version, request_id, &message, max_frame_bytes, &mut out) {
                        tracing::error!("cannot encode a result: {e}");
                    }
                }
            }
        }
        if send.write_all(&out).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
    let _ = send.stopped().await;
}

/// The detail text of a flow-control refusal.
fn refusal_detail(refused: GatewayError) -> &'static str {
    match refused {
        GatewayError::BadRequest => "request id already in flight",
        _ => "",
    }
}

/// The time a command was received, Unix nanoseconds: the sequencer's stamp (never earlier
/// than the previous command's), never used for durations.
/// The refusal of a command by a cluster node that is not the leader (PROTOCOL.md §17): the
/// message is `not the leader: leader=<host:port>` with the leader's client address, or
/// `not the leader: leader=?` while none is known (an election is running).
pub fn not_leader(leader_client_address: Option<&str>) -> Message {
    Message::error(GatewayError::NotLeader, &format!("leader={}", leader_client_address.unwrap_or("?")))
}

fn unix_time_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::*;
    use crate::pipeline::Origin;

    fn ledger(account: AccountId) -> Event {
        Event::Ledger(LedgerEntry {
            account,
            asset: AssetId(1),
            kind: LedgerKind::Trade,
            available_delta: 1,
            held_delta: 0,
            available_after: 1,
            held_after: 0,
            ref_kind: RefKind::Trade,
            ref_id: 1,
        })
    }

    fn report(account: AccountId, order_id: OrderId) -> OrderReport {
        OrderReport {
            order_id,
            account,
            symbol: SymbolId(1),
            client_order_id: 0,
            exec: ExecKind::Trade,
            status: OrderStatus::Filled,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: 10,
            qty: 1,
            filled_qty: 1,
            remaining_qty: 0,
            filled_quote: 10,
            fees_paid: 0,
            stop_price: 0,
        }
    }

    fn trade() -> Trade {
        Trade {
            trade_id: TradeId(1),
            symbol: SymbolId(1),
            price: 10,
            qty: 1,
            quote_qty: 10,
            maker_order: OrderId(5),
            taker_order: OrderId(6),
            maker_account: AccountId(1),
            taker_account: AccountId(2),
            maker_side: Side::Buy,
            maker_fee: 1,
            taker_fee: 2,
        }
    }

    fn directory() -> AccountDirectory {
        let directory = AccountDirectory::default();
        directory.observe(&[
            Event::AccountCreated { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
            Event::AccountCreated { account: AccountId(2), parent: AccountId::NONE, owner: 2 },
        ]);
        directory
    }

    fn grants(roots: &[AccountId], admin: bool) -> Grants {
        Grants { principal: "p".into(), admin, roots: roots.to_vec() }
    }

    /// The events a connection was sent (`None`: nothing), with the request id.
    fn received(rx: &mut mpsc::Receiver<Outbound>) -> Option<(u64, Vec<Event>)> {
        match rx.try_recv().ok()? {
            Outbound::Result { request_id, events, .. } => Some((request_id, events.into_vec())),
            Outbound::Frames(_) | Outbound::Refused { .. } => panic!("a result was expected"),
        }
    }

    #[test]
    fn the_answer_and_every_push_carry_only_what_their_principal_sees() {
        let router = Router::default();
        let mut receivers = Vec::new();
        for (connection, grants) in [
            (1, grants(&[AccountId(1)], false)),
            (2, grants(&[AccountId(2)], false)),
            (3, grants(&[], false)),
            (4, grants(&[], true)),
        ] {
            let (tx, rx) = mpsc::channel(8);
            router.insert(connection, tx, grants);
            receivers.push(rx);
        }
        // Connection 2's sell took connection 1's resting bid.
        let events = vec![
            ledger(AccountId(1)),
            ledger(AccountId(2)),
            Event::Order(report(AccountId(1), OrderId(5))),
            Event::Order(report(AccountId(2), OrderId(6))),
            Event::Trade(trade()),
        ];
        let slot = OutputSlot {
            seq: 6,
            timestamp_ns: 0,
            origin: Origin { connection: 2, request_id: 9 },
            events: events.clone(),
            answer: None,
            query: None,
        };
        router.deliver(&slot, &directory());
        let maker_only = Trade { taker_account: AccountId::NONE, taker_order: OrderId::NONE, taker_fee: 0, ..trade() };
        let taker_only = Trade { maker_account: AccountId::NONE, maker_order: OrderId::NONE, maker_fee: 0, ..trade() };
        assert_eq!(
            received(&mut receivers[0]),
            Some((
                0,
                vec![ledger(AccountId(1)), Event::Order(report(AccountId(1), OrderId(5))), Event::Trade(maker_only)]
            ))
        );
        assert_eq!(
            received(&mut receivers[1]),
            Some((
                9,
                vec![ledger(AccountId(2)), Event::Order(report(AccountId(2), OrderId(6))), Event::Trade(taker_only)]
            ))
        );
        assert_eq!(received(&mut receivers[2]), None, "nothing visible: no push");
        assert_eq!(received(&mut receivers[3]), Some((0, events)), "an admin sees everything");
    }

    #[test]
    fn an_invisible_order_is_answered_as_an_unknown_one() {
        let directory = directory();
        let trader1 = grants(&[AccountId(1)], false);
        let query = Some(Query::Order { order_id: OrderId(6) });
        let answer = |order| {
            messages_for(3, Visible::default(), query, Some(QueryAnswer::Order(order)), 0, &trader1, &directory)
        };
        assert_eq!(answer(Some(report(AccountId(2), OrderId(6)))), answer(None));
        assert_eq!(answer(None), vec![Message::error(GatewayError::NotFound, "")]);
        assert_eq!(
            answer(Some(report(AccountId(1), OrderId(6)))),
            vec![Message::OrderInfo { seq: 3, order: report(AccountId(1), OrderId(6)) }]
        );
    }
}
