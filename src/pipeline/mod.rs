//! The running pipeline: lock-free rings between the gateway, the journaler, the processor,
//! the event-log writer and the responder (exchange-core's layout).
//!
//! ```text
//!  gateway tasks ──try_submit──► input ring ─┬─► journaler: append, group commit ──► durable seq
//!  (multi-producer)                          └─► processor: Engine::apply ──► output ring
//!                                                                    ┌──────────────┤
//!                                            event-log writer ◄──────┘      responder: waits for
//!                                            (events/ journal)              durable seq >= slot seq
//! ```
//!
//! The journaler and the processor read the input ring in parallel and number commands the same
//! way (base + count), so they agree on every sequence and timestamp without talking. Nothing
//! leaves through the responder before the input that caused it is durable under the configured
//! policy, and the event log never gets ahead of the durable input (it may lag; recovery
//! regenerates the missing records from the input journal).
//!
//! The threads are ours (disruptor `EventPoller`s), so how they wait is a setting: spinning
//! suits a dedicated core, a 2-core machine wants at most one spinning thread.
//!
//! A thread that panics or fails records why in [`PipelineStats`] (the first failure is the
//! reason the daemon gives) and every other thread stops at its next batch; each thread also
//! counts the slots it has finished, so the daemon can tell a stuck thread from an idle one
//! ([`health`]).

pub mod fault;
pub mod health;
mod idle;
pub mod latency;
pub mod sequencer;

pub use idle::WaitStrategy;

use crate::engine::{
    AccountId, BalanceView, Command, DepthLevel, Engine, Event, OrderId, OrderReport, RejectReason, Seq, SymbolId,
};
use crate::pipeline::sequencer::{Sequencer, SequencerConfig, SequencerError, SequencerRecovery};
use crate::storage::event_log::EventLogWriter;
use crate::storage::journal::JournalWriter;
use crate::storage::replay::{DataDir, ReplayError};
use crate::wire::codec;
use disruptor::{BusySpin, EventGuard, Polling, Producer};
use idle::Idler;
use latency::Log2Histogram;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};

/// Who sent a command, so its result can be routed back. Opaque to the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub connection: u64,
    pub request_id: u64,
}

/// A read of the processor's state. It rides the input ring like a command (so it sees every
/// command before it) but is not journaled and takes no sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Balances { account: AccountId },
    SubtreeTotals { account: AccountId },
    Order { order_id: OrderId },
    OpenOrders { account: AccountId },
    Depth { symbol: SymbolId, levels: u16 },
    Assets,
    Symbols,
    Withdrawal { withdrawal_id: u64 },
}

/// The answer to a query; `None` inside means the account, order or symbol is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    Balances(Option<Vec<BalanceView>>),
    SubtreeTotals(Option<Vec<(crate::engine::AssetId, i64)>>),
    Order(Option<OrderReport>),
    OpenOrders(Option<Vec<OrderReport>>),
    Depth(Option<(Vec<DepthLevel>, Vec<DepthLevel>)>),
    Assets(Vec<crate::engine::AssetView>),
    Symbols(Vec<crate::engine::SymbolView>),
    Withdrawal(Option<crate::engine::Withdrawal>),
}

/// What a slot of the input ring carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Command(Command),
    Query(Query),
}

/// A slot of the input ring.
#[derive(Clone, Copy, Debug)]
pub struct InputSlot {
    pub request: Request,
    pub origin: Origin,
    /// When the gateway received it (Unix ns); the sequenced time is never earlier than the
    /// previous command's, so the journal's timestamps never go backwards.
    pub received_ns: u64,
    /// The client's request key for a safe retry (0: none); journaled with the command.
    pub request_key: u64,
}

/// A slot of the output ring: one command's result, or one query's answer.
#[derive(Clone, Debug)]
pub struct OutputSlot {
    /// A command's sequence; for a query, the last sequence the answer reflects.
    pub seq: Seq,
    pub timestamp_ns: u64,
    pub origin: Origin,
    /// A command's events. Preallocated per slot and reused, so the processor does not allocate.
    pub events: Vec<Event>,
    /// The query this slot answers, with its answer (queries are off the hot path and may
    /// allocate). `None` for a command.
    pub answer: Option<QueryAnswer>,
    pub query: Option<Query>,
}

/// Receives each command's result once its input is durable, in sequence order, on the
/// responder thread. The gateway implements it by routing to connections.
pub trait Responder: Send + 'static {
    /// Called once with the recovered state, before the first `deliver` (for example to seed
    /// the gateway's public books from the books the engine recovered).
    fn recovered(&mut self, _engine: &Engine) {}

    fn deliver(&mut self, result: &OutputSlot);
}

#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    pub journal: SequencerConfig,
    /// Slots per ring; a power of two.
    pub ring_size: usize,
    pub processor_wait: WaitStrategy,
    pub other_wait: WaitStrategy,
    /// Pin the processor thread to this core (taken after the rings are built).
    pub processor_core: Option<usize>,
    /// Hash the state after each command whose sequence is a multiple of this, into
    /// `PipelineStats::state_hashes` (a cluster node compares them with the leader's); 0: never.
    pub state_hash_every_commands: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            journal: SequencerConfig::default(),
            ring_size: 1 << 14,
            processor_wait: WaitStrategy::Backoff,
            other_wait: WaitStrategy::Backoff,
            processor_core: None,
            state_hash_every_commands: 0,
        }
    }
}

/// Smallest ring the multi-producer disruptor accepts.
pub const MIN_RING_SIZE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("ring_size must be a power of two of at least {MIN_RING_SIZE}, not {0}")]
    RingSize(usize),
    #[error(transparent)]
    Recovery(#[from] SequencerError),
}

impl PipelineError {
    /// The sequence of the journaled command whose processing panicked during recovery, if
    /// that is why the pipeline did not start: restarting cannot help, an operator must act.
    pub fn poison_seq(&self) -> Option<Seq> {
        match self {
            PipelineError::Recovery(SequencerError::Replay(ReplayError::Panicked { seq, .. })) => Some(*seq),
            _ => None,
        }
    }
}

/// The input ring was full: the gateway answers "busy" instead of blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the input ring is full")]
pub struct Busy;

/// Why a command was not accepted for sequencing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the input ring is full")]
    Busy,
    /// A cluster node that is not the leader sequences nothing: the client must send to the
    /// leader, whose client address this is when one is known.
    #[error("not the leader")]
    NotLeader { leader_client_address: Option<String> },
}

impl From<Busy> for SubmitError {
    fn from(_: Busy) -> SubmitError {
        SubmitError::Busy
    }
}

/// Where a cluster node sends client commands instead of the input ring: the node's consensus
/// thread, which stamps, replicates and publishes them into the ring once committed
/// (`cluster`). `None` on a single node.
pub trait CommandRoute: Send + Sync {
    fn route(&self, command: Command, request_key: u64, origin: Origin, received_ns: u64) -> Result<(), SubmitError>;
}

type InputProducer = disruptor::MultiProducer<InputSlot, disruptor::MultiConsumerBarrier>;

/// A handle that publishes commands into the input ring; clone one per gateway task.
#[derive(Clone)]
pub struct Submitter {
    producer: InputProducer,
    stats: Arc<PipelineStats>,
    /// A cluster node's consensus thread (see [`CommandRoute`]); `None` on a single node.
    route: Option<Arc<dyn CommandRoute>>,
}

impl Submitter {
    /// Publishes without waiting: `Busy` when the ring is full (nothing was accepted then).
    pub fn try_submit(&mut self, command: Command, origin: Origin, received_ns: u64) -> Result<(), SubmitError> {
        self.try_submit_keyed(command, 0, origin, received_ns)
    }

    /// `try_submit` with the client's request key (0: none), kept by the engine so that a retry
    /// is not applied twice. On a cluster node the command goes to the consensus thread.
    pub fn try_submit_keyed(
        &mut self,
        command: Command,
        request_key: u64,
        origin: Origin,
        received_ns: u64,
    ) -> Result<(), SubmitError> {
        match &self.route {
            Some(route) => route.route(command, request_key, origin, received_ns),
            None => Ok(self.try_publish(Request::Command(command), request_key, origin, received_ns)?),
        }
    }

    /// Publishes a command into the input ring as it is, bypassing the route: the consensus
    /// thread's way in, with the timestamp the leader stamped (the journaler and the processor
    /// keep it, since stamps never go backwards).
    pub fn try_publish_sequenced(
        &mut self,
        command: Command,
        request_key: u64,
        origin: Origin,
        timestamp_ns: u64,
    ) -> Result<(), Busy> {
        self.try_publish(Request::Command(command), request_key, origin, timestamp_ns)
    }

    /// Asks the processor a question; the answer arrives through the `Responder`.
    pub fn try_query(&mut self, query: Query, origin: Origin, received_ns: u64) -> Result<(), Busy> {
        self.try_publish(Request::Query(query), 0, origin, received_ns)
    }

    /// This submitter with commands routed through `route` (a cluster node's consensus thread).
    pub fn with_route(mut self, route: Arc<dyn CommandRoute>) -> Submitter {
        self.route = Some(route);
        self
    }

    fn try_publish(
        &mut self,
        request: Request,
        request_key: u64,
        origin: Origin,
        received_ns: u64,
    ) -> Result<(), Busy> {
        self.producer
            .try_publish(|slot| {
                slot.request = request;
                slot.origin = origin;
                slot.received_ns = received_ns;
                slot.request_key = request_key;
            })
            .map(|_| {
                // What is queued for the journaler and the processor (see `health`).
                self.stats.submitted_slots.fetch_add(1, Ordering::Release);
            })
            .map_err(|_| Busy)
    }
}

/// Counters shared by the pipeline's threads (for metrics and for the responder's gate).
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Highest input sequence that is durable under the configured policy.
    pub durable_seq: AtomicU64,
    /// Highest sequence the processor has applied.
    pub applied_seq: AtomicU64,
    /// Highest sequence written to the event log (not necessarily durable).
    pub events_logged_seq: AtomicU64,
    /// Highest sequence delivered by the responder.
    pub delivered_seq: AtomicU64,
    /// Set when a pipeline thread failed (panic, error, or a stall found by the daemon): the
    /// daemon must stop.
    pub failed: AtomicBool,
    /// Why: the first failure, `"<thread> <what happened>"`.
    failure: OnceLock<String>,
    /// Input-ring slots published (commands and queries), counted by the submitters.
    pub submitted_slots: AtomicU64,
    /// Ring slots each thread has finished, stored once per batch: the progress the daemon
    /// watches. The processor publishes one output slot per input slot, so `processor_slots`
    /// is also what is queued for the event-log writer and the responder.
    pub journaler_slots: AtomicU64,
    pub processor_slots: AtomicU64,
    pub event_log_slots: AtomicU64,
    pub responder_slots: AtomicU64,
    /// Slots per ring (`PipelineConfig::ring_size`), for the occupancy gauges.
    pub ring_slots: AtomicU64,
    /// Time `Engine::apply` takes, measured around it on the processor thread for one command
    /// in [`APPLY_SAMPLE_EVERY`] (two clock reads per command would cost more than the rest of
    /// the bookkeeping; the engine itself reads no clock).
    pub apply_latency: Log2Histogram,
    /// Time the journaler's commit of one batch takes (the group commit: write + sync under
    /// `fsync` durability).
    pub journal_commit_latency: Log2Histogram,
    /// Per command, from the gateway's receive stamp (the sequencing timestamp) until the
    /// responder has handed its result to the connection: ring wait, apply, durability.
    pub round_trip_latency: Log2Histogram,
    /// Commands the engine rejected, by reason (counted by the responder, off the processor).
    pub rejects: RejectCounts,
    /// State hashes the processor computed (`PipelineConfig::state_hash_every_commands`), until
    /// the cluster's consensus thread takes them; at most [`STATE_HASHES_QUEUED`].
    pub state_hashes: Mutex<VecDeque<(Seq, [u8; 32])>>,
}

/// State hashes kept for the consensus thread; older ones are dropped.
pub const STATE_HASHES_QUEUED: usize = 64;

/// The processor times one command in this many (those whose sequence is a multiple of it).
pub const APPLY_SAMPLE_EVERY: u64 = 16;

/// Per-reason reject counters, indexed like [`RejectReason::ALL`].
#[derive(Debug)]
pub struct RejectCounts([AtomicU64; RejectReason::ALL.len()]);

impl Default for RejectCounts {
    fn default() -> Self {
        RejectCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl RejectCounts {
    fn count(&self, reason: RejectReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Every reason with its count, in code order (zeros included, so a series exists from the
    /// start and `rate()` sees its first reject).
    pub fn counts(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL.iter().zip(&self.0).map(|(&reason, n)| (reason, n.load(Ordering::Relaxed)))
    }
}

impl PipelineStats {
    /// Records that `thread` failed and makes the pipeline stop. The first failure is the
    /// reason (logged as an error); later ones are usually its consequences (logged as warnings).
    pub fn fail(&self, thread: &str, what: &str) {
        let reason = format!("{thread} {what}");
        if self.failure.set(reason.clone()).is_ok() {
            tracing::error!("pipeline failed: {reason}");
        } else {
            tracing::warn!("after the pipeline failed: {reason}");
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Why the pipeline failed, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failed.load(Ordering::Acquire).then(|| self.failure.get().map(String::as_str)).flatten()
    }
}

/// The running pipeline. Drop every `Submitter` (and call `shutdown`) to drain and stop.
pub struct Pipeline {
    submitter: Option<Submitter>,
    stats: Arc<PipelineStats>,
    /// `None` when the thread failed (the reason is in `stats`).
    processor: JoinHandle<Option<Engine>>,
    others: Vec<JoinHandle<Option<()>>>,
}

impl Pipeline {
    /// Recovers `data_dir` (snapshot + journal, event-log catch-up) and starts the threads.
    pub fn start(
        data_dir: &DataDir,
        config: PipelineConfig,
        responder: impl Responder,
    ) -> Result<(Pipeline, SequencerRecovery), PipelineError> {
        Pipeline::start_with(data_dir, config, |_| responder)
    }

    /// Like `start`, but builds the responder from the recovered state (for example, the
    /// gateway's mirror of the account tree) before any command flows.
    pub fn start_with<R: Responder>(
        data_dir: &DataDir,
        config: PipelineConfig,
        make_responder: impl FnOnce(&Engine) -> R,
    ) -> Result<(Pipeline, SequencerRecovery), PipelineError> {
        if config.ring_size < MIN_RING_SIZE || !config.ring_size.is_power_of_two() {
            return Err(PipelineError::RingSize(config.ring_size));
        }
        let (sequencer, recovery) = Sequencer::open(data_dir, config.journal)?;
        let (engine, input_log, events_log) = sequencer.into_parts();
        let mut responder = make_responder(&engine);
        responder.recovered(&engine);
        let first_seq = engine.last_seq() + 1;
        let first_timestamp_ns = engine.last_timestamp_ns();
        let stats = Arc::new(PipelineStats::default());
        // Everything up to the recovered sequence is durable, applied, logged (recovery caught
        // the event log up) and was answered before the restart: the high-water marks start
        // there, not at 0, so a scrape after a restart tells the truth before new traffic.
        for mark in [&stats.durable_seq, &stats.applied_seq, &stats.events_logged_seq, &stats.delivered_seq] {
            mark.store(first_seq - 1, Ordering::Release);
        }
        stats.ring_slots.store(config.ring_size as u64, Ordering::Relaxed);

        let input_factory = || InputSlot {
            request: Request::Command(Command::WithdrawApprove { withdrawal_id: 0 }),
            origin: Origin::default(),
            received_ns: 0,
            request_key: 0,
        };
        let (journal_poller, builder) =
            disruptor::build_multi_producer(config.ring_size, input_factory, BusySpin).new_event_poller();
        let (process_poller, builder) = builder.new_event_poller();
        let input_producer = builder.build();

        let output_factory = || OutputSlot {
            seq: 0,
            timestamp_ns: 0,
            origin: Origin::default(),
            events: Vec::with_capacity(64),
            answer: None,
            query: None,
        };
        let (events_poller, builder) =
            disruptor::build_single_producer(config.ring_size, output_factory, BusySpin).new_event_poller();
        let (respond_poller, builder) = builder.new_event_poller();
        let output_producer = builder.build();

        let sequencing = Sequencing {
            next_seq: first_seq,
            last_timestamp_ns: first_timestamp_ns,
            state_hash_every_commands: config.state_hash_every_commands,
        };
        let others = vec![
            spawn("seqd-journaler", "journaler", &stats, move |stats| {
                run_journaler(journal_poller, input_log, sequencing, stats, Idler::new(config.other_wait))
            }),
            spawn("seqd-event-log", "event-log writer", &stats, move |stats| {
                run_event_log(events_poller, events_log, stats, Idler::new(config.other_wait))
            }),
            spawn("seqd-responder", "responder", &stats, move |stats| {
                run_responder(respond_poller, responder, stats, Idler::new(config.other_wait))
            }),
        ];
        let processor = spawn("seqd-processor", "processor", &stats, move |stats| {
            pin_to(config.processor_core);
            run_processor(process_poller, output_producer, engine, sequencing, stats, Idler::new(config.processor_wait))
        });
        let submitter = Submitter { producer: input_producer, stats: stats.clone(), route: None };
        let pipeline = Pipeline { submitter: Some(submitter), stats, processor, others };
        Ok((pipeline, recovery))
    }

    /// A new handle for publishing commands.
    pub fn submitter(&self) -> Submitter {
        self.submitter.clone().expect("pipeline is running")
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    /// Stops accepting (drops the pipeline's own submitter), waits until every published command
    /// is journaled, applied, logged and delivered, and returns the final engine. Outstanding
    /// `Submitter` clones must have been dropped first, or this waits for them.
    pub fn shutdown(mut self) -> Result<Engine, String> {
        self.submitter = None;
        let engine = self.processor.join().ok().flatten();
        let others_ok = self.others.into_iter().all(|handle| handle.join().ok().flatten().is_some());
        match (engine, others_ok) {
            (Some(engine), true) => Ok(engine),
            _ => Err(self.stats.failure().unwrap_or("a pipeline thread failed").to_string()),
        }
    }
}

/// Starts a pipeline thread. Whatever ends it other than a clean return (an error, a panic)
/// is recorded with `PipelineStats::fail` under `role`; the handle then yields `None`.
fn spawn<T: Send + 'static>(
    thread_name: &str,
    role: &'static str,
    stats: &Arc<PipelineStats>,
    body: impl FnOnce(&PipelineStats) -> Result<T, String> + Send + 'static,
) -> JoinHandle<Option<T>> {
    let stats = stats.clone();
    let run = move || match panic::catch_unwind(AssertUnwindSafe(|| body(&stats))) {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            stats.fail(role, &e);
            None
        }
        Err(payload) => {
            stats.fail(role, &format!("panicked: {}", fault::panic_message(&*payload)));
            None
        }
    };
    thread::Builder::new().name(thread_name.into()).spawn(run).expect("spawn a pipeline thread")
}

fn pin_to(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::warn!(core = id, "could not pin the processor thread");
        }
    }
}

/// How the journaler and the processor number commands: the same rule on both threads.
#[derive(Clone, Copy, Debug)]
struct Sequencing {
    next_seq: Seq,
    last_timestamp_ns: u64,
    /// `PipelineConfig::state_hash_every_commands` (the processor's only use of it).
    state_hash_every_commands: u64,
}

impl Sequencing {
    /// The sequence and timestamp of the next command; time never goes backwards.
    fn stamp(&mut self, received_ns: u64) -> (Seq, u64) {
        let seq = self.next_seq;
        let timestamp_ns = received_ns.max(self.last_timestamp_ns);
        self.next_seq += 1;
        self.last_timestamp_ns = timestamp_ns;
        (seq, timestamp_ns)
    }
}

type InputPoller = disruptor::EventPoller<InputSlot, disruptor::MultiProducerBarrier>;
type OutputPoller = disruptor::EventPoller<OutputSlot, disruptor::SingleProducerBarrier>;

/// A ring a pipeline thread consumes. Exists so that one loop ([`for_each_batch`]) serves both
/// rings: `disruptor` keeps the trait bound of `EventPoller::poll` (`Barrier`) private, so a
/// function cannot be generic over `EventPoller` itself.
trait Ring {
    type Slot;
    type Barrier;
    fn next_batch(&mut self) -> Result<EventGuard<'_, Self::Slot, Self::Barrier>, Polling>;
}

impl Ring for InputPoller {
    type Slot = InputSlot;
    type Barrier = disruptor::MultiProducerBarrier;
    fn next_batch(&mut self) -> Result<EventGuard<'_, InputSlot, Self::Barrier>, Polling> {
        self.poll()
    }
}

impl Ring for OutputPoller {
    type Slot = OutputSlot;
    type Barrier = disruptor::SingleProducerBarrier;
    fn next_batch(&mut self) -> Result<EventGuard<'_, OutputSlot, Self::Barrier>, Polling> {
        self.poll()
    }
}

/// The loop of every pipeline thread: hands each batch of `ring` to `on_batch`, then stores the
/// slots finished so far in `slots_done` (the progress the daemon watches, see `health`) and
/// resets the idler; idles while the ring is empty. Returns when the ring is shut down, when
/// `on_batch` breaks (its batch then does not count) or fails.
fn for_each_batch<R: Ring, E>(
    ring: &mut R,
    idler: &mut Idler,
    slots_done: &AtomicU64,
    mut on_batch: impl FnMut(EventGuard<'_, R::Slot, R::Barrier>, &mut Idler) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let mut slots_total = 0u64;
    loop {
        match ring.next_batch() {
            Ok(mut batch) => {
                // `ExactSizeIterator` is implemented for `&mut EventGuard` only.
                let slots_in_batch = &mut batch;
                let slots = slots_in_batch.len() as u64;
                if on_batch(batch, idler)?.is_break() {
                    return Ok(());
                }
                slots_total += slots;
                slots_done.store(slots_total, Ordering::Release);
                idler.reset();
            }
            Err(Polling::NoEvents) => idler.idle(),
            Err(Polling::Shutdown) => return Ok(()),
        }
    }
}

fn run_journaler(
    mut poller: InputPoller,
    mut log: JournalWriter,
    mut sequencing: Sequencing,
    stats: &PipelineStats,
    mut idler: Idler,
) -> Result<(), String> {
    let mut payload = Vec::with_capacity(128);
    for_each_batch(&mut poller, &mut idler, &stats.journaler_slots, |mut batch, _| {
        if stats.failed.load(Ordering::Acquire) {
            // Another thread failed: journal nothing more that will never be answered.
            return Ok(ControlFlow::Break(()));
        }
        for slot in &mut batch {
            let Request::Command(command) = &slot.request else { continue };
            let (seq, timestamp_ns) = sequencing.stamp(slot.received_ns);
            fault::before_journal(seq);
            payload.clear();
            // A keyed command is one keyed record (the key, then the command's kind and payload).
            let kind = codec::encode_input(command, slot.request_key, &mut payload);
            log.append(seq, timestamp_ns, kind, &payload).map_err(|e| format!("journal error: {e}"))?;
        }
        drop(batch);
        // One commit per batch: the group commit of the fsync policy.
        let commit_started = std::time::Instant::now();
        let durable = log.commit().map_err(|e| format!("journal error: {e}"))?;
        stats.journal_commit_latency.record(commit_started.elapsed());
        stats.durable_seq.store(durable, Ordering::Release);
        Ok(ControlFlow::Continue(()))
    })
}

fn run_processor(
    mut poller: InputPoller,
    mut output: disruptor::SingleProducer<OutputSlot, disruptor::MultiConsumerBarrier>,
    mut engine: Engine,
    mut sequencing: Sequencing,
    stats: &PipelineStats,
    mut idler: Idler,
) -> Result<Engine, String> {
    // What the thread is doing, to name it if that panics: a local copy per slot, no more.
    let mut doing: Option<(Seq, Request)> = None;
    let run = panic::catch_unwind(AssertUnwindSafe(|| {
        process(&mut poller, &mut output, &mut engine, &mut sequencing, stats, &mut idler, &mut doing)
    }));
    match (run, doing) {
        (Ok(()), _) => Ok(engine),
        (Err(payload), Some((seq, Request::Command(command)))) => {
            Err(format!("panicked applying command {seq} ({command:?}): {}", fault::panic_message(&*payload)))
        }
        (Err(payload), Some((_, Request::Query(query)))) => {
            Err(format!("panicked answering {query:?}: {}", fault::panic_message(&*payload)))
        }
        (Err(payload), None) => Err(format!("panicked: {}", fault::panic_message(&*payload))),
    }
}

fn process(
    poller: &mut InputPoller,
    output: &mut disruptor::SingleProducer<OutputSlot, disruptor::MultiConsumerBarrier>,
    engine: &mut Engine,
    sequencing: &mut Sequencing,
    stats: &PipelineStats,
    idler: &mut Idler,
    doing: &mut Option<(Seq, Request)>,
) {
    let Ok(()) = for_each_batch(poller, idler, &stats.processor_slots, |mut batch, _| {
        for slot in &mut batch {
            match &slot.request {
                Request::Command(command) => {
                    let (seq, timestamp_ns) = sequencing.stamp(slot.received_ns);
                    *doing = Some((seq, slot.request));
                    output.publish(|out| {
                        out.seq = seq;
                        out.timestamp_ns = timestamp_ns;
                        out.origin = slot.origin;
                        out.answer = None;
                        out.query = None;
                        out.events.clear();
                        fault::before_apply(seq);
                        let key = slot.request_key;
                        if seq % APPLY_SAMPLE_EVERY == 0 {
                            let started = std::time::Instant::now();
                            engine.apply_keyed(seq, timestamp_ns, key, command, &mut out.events);
                            stats.apply_latency.record(started.elapsed());
                        } else {
                            engine.apply_keyed(seq, timestamp_ns, key, command, &mut out.events);
                        }
                    });
                    stats.applied_seq.store(seq, Ordering::Release);
                    let every = sequencing.state_hash_every_commands;
                    if every != 0 && seq % every == 0 {
                        record_state_hash(engine, stats);
                    }
                }
                Request::Query(query) => {
                    *doing = Some((engine.last_seq(), slot.request));
                    output.publish(|out| {
                        out.seq = engine.last_seq();
                        out.timestamp_ns = engine.last_timestamp_ns();
                        out.origin = slot.origin;
                        out.events.clear();
                        out.answer = Some(answer(engine, query));
                        out.query = Some(*query);
                    })
                }
            }
        }
        drop(batch);
        *doing = None;
        Ok::<_, Infallible>(ControlFlow::Continue(()))
    });
}

/// Hashes the state for the cluster's comparison (once per `state_hash_every_commands`: it
/// encodes the whole state, which costs milliseconds on a large book).
fn record_state_hash(engine: &Engine, stats: &PipelineStats) {
    let hash = engine.state_hash();
    let mut queue = stats.state_hashes.lock().expect("state hash lock");
    if queue.len() == STATE_HASHES_QUEUED {
        queue.pop_front();
    }
    queue.push_back((engine.last_seq(), hash));
}

fn run_event_log(
    mut poller: OutputPoller,
    mut log: EventLogWriter,
    stats: &PipelineStats,
    mut idler: Idler,
) -> Result<(), String> {
    for_each_batch(&mut poller, &mut idler, &stats.event_log_slots, |mut batch, idler| {
        let mut last = 0;
        for slot in &mut batch {
            if slot.answer.is_some() {
                continue; // a query's answer is not an event
            }
            // The event log must never get ahead of the input journal: a crash would then
            // leave events of commands that recovery cannot see.
            while stats.durable_seq.load(Ordering::Acquire) < slot.seq {
                if stats.failed.load(Ordering::Acquire) {
                    return Err("stops: the pipeline failed".to_string());
                }
                idler.idle();
            }
            // A long list is split into parts (event_log): no list is too large to log.
            log.append(slot.seq, slot.timestamp_ns, &slot.events).map_err(|e| format!("event log error: {e}"))?;
            last = slot.seq;
        }
        drop(batch);
        log.commit().map_err(|e| format!("event log error: {e}"))?;
        // A batch of queries only logs nothing: never move the counter back.
        stats.events_logged_seq.fetch_max(last, Ordering::AcqRel);
        Ok(ControlFlow::Continue(()))
    })
}

fn run_responder(
    mut poller: OutputPoller,
    mut responder: impl Responder,
    stats: &PipelineStats,
    mut idler: Idler,
) -> Result<(), String> {
    for_each_batch(&mut poller, &mut idler, &stats.responder_slots, |mut batch, idler| {
        for slot in &mut batch {
            // Nothing leaves before its input is durable; an answer waits until the state it
            // reflects is durable, so it never shows what a crash could undo.
            while stats.durable_seq.load(Ordering::Acquire) < slot.seq {
                if stats.failed.load(Ordering::Acquire) {
                    return Err("stops: the pipeline failed; results are withheld".to_string());
                }
                idler.idle();
            }
            idler.reset();
            fault::before_deliver(slot.seq);
            responder.deliver(slot);
            stats.delivered_seq.store(slot.seq, Ordering::Release);
            if slot.answer.is_none() {
                count_command(stats, slot);
            }
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// The responder's figures for a delivered command: its round trip (one clock read here, on
/// the responder, never on the processor) and its reject reason, if any.
fn count_command(stats: &PipelineStats, slot: &OutputSlot) {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    stats.round_trip_latency.record_ns(now_ns.saturating_sub(slot.timestamp_ns));
    if let [Event::Rejected { reason }] = slot.events[..] {
        stats.rejects.count(reason);
    }
}

fn answer(engine: &Engine, query: &Query) -> QueryAnswer {
    match *query {
        Query::Balances { account } => QueryAnswer::Balances(engine.balances(account)),
        Query::SubtreeTotals { account } => QueryAnswer::SubtreeTotals(engine.subtree_totals(account)),
        Query::Order { order_id } => QueryAnswer::Order(engine.order(order_id)),
        Query::OpenOrders { account } => QueryAnswer::OpenOrders(engine.open_orders(account)),
        // PROTOCOL.md: levels 0 is the whole book.
        Query::Depth { symbol, levels: 0 } => QueryAnswer::Depth(engine.depth(symbol, usize::MAX)),
        Query::Depth { symbol, levels } => QueryAnswer::Depth(engine.depth(symbol, levels as usize)),
        Query::Assets => QueryAnswer::Assets(engine.asset_views()),
        Query::Symbols => QueryAnswer::Symbols(engine.symbol_views()),
        Query::Withdrawal { withdrawal_id } => QueryAnswer::Withdrawal(engine.withdrawal(withdrawal_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AssetId;
    use std::time::{Duration, Instant};

    /// Panics on the first result it is given, as a bug in the gateway's routing would.
    struct PanickingResponder;

    impl Responder for PanickingResponder {
        fn deliver(&mut self, _result: &OutputSlot) {
            panic!("routing bug");
        }
    }

    fn wait_for_failure(stats: &PipelineStats) -> String {
        let started = Instant::now();
        while stats.failure().is_none() {
            assert!(started.elapsed() < Duration::from_secs(30), "no failure recorded");
            std::thread::sleep(Duration::from_millis(10));
        }
        stats.failure().unwrap().to_string()
    }

    #[test]
    fn a_panicking_thread_is_recorded_as_the_failure_and_stops_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let config = PipelineConfig { ring_size: MIN_RING_SIZE, ..PipelineConfig::default() };
        let (pipeline, _) = Pipeline::start(&DataDir::new(dir.path()), config, PanickingResponder).unwrap();
        let stats = pipeline.stats();
        let mut submitter = pipeline.submitter();
        submitter.try_submit(Command::CreateAsset { asset: AssetId(1), scale: 2 }, Origin::default(), 1).unwrap();
        assert_eq!(wait_for_failure(&stats), "responder panicked: routing bug");
        assert!(stats.failed.load(Ordering::Acquire));
        drop(submitter);
        assert_eq!(pipeline.shutdown().err().as_deref(), Some("responder panicked: routing bug"));
    }

    #[test]
    fn the_first_failure_is_the_reason_later_ones_do_not_replace_it() {
        let stats = PipelineStats::default();
        assert_eq!(stats.failure(), None);
        stats.fail("journaler", "journal error: disk full");
        stats.fail("responder", "stops: the pipeline failed");
        assert_eq!(stats.failure(), Some("journaler journal error: disk full"));
    }
}
