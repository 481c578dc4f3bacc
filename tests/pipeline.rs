//! The threaded pipeline on a real data directory: two producer threads, the journaler and
//! processor in parallel, the event log and the responder.

use seqd::engine::{AccountId, Command, Event, OrderId, Seq, SymbolId};
use seqd::pipeline::{
    Origin, OutputSlot, Pipeline, PipelineConfig, PipelineStats, Query, QueryAnswer, Responder, SubmitError,
    WaitStrategy,
};
use seqd::storage::event_log::EventLogReader;
use seqd::storage::replay::{apply_journal, replay, DataDir, ReplayOptions};
use seqd::testkit::workload::{exchange_core_mix, WorkloadSpec};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

/// What the responder saw: the result, and the durable sequence at the moment of delivery.
struct Delivery {
    seq: Seq,
    origin: Origin,
    events: Vec<Event>,
    answer: Option<QueryAnswer>,
    durable_at_delivery: Seq,
}

struct ChannelResponder {
    tx: mpsc::Sender<Delivery>,
    stats: Arc<OnceLock<Arc<PipelineStats>>>,
}

impl Responder for ChannelResponder {
    fn deliver(&mut self, result: &OutputSlot) {
        let durable = self.stats.get().map_or(0, |s| s.durable_seq.load(Ordering::Acquire));
        let _ = self.tx.send(Delivery {
            seq: result.seq,
            origin: result.origin,
            events: result.events.clone(),
            answer: result.answer.clone(),
            durable_at_delivery: durable,
        });
    }
}

fn start(dir: &std::path::Path, ring_size: usize) -> (Pipeline, mpsc::Receiver<Delivery>) {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(OnceLock::new());
    let config = PipelineConfig { ring_size, processor_wait: WaitStrategy::Backoff, ..PipelineConfig::default() };
    let (pipeline, _) =
        Pipeline::start(&DataDir::new(dir), config, ChannelResponder { tx, stats: stats.clone() }).unwrap();
    stats.set(pipeline.stats()).unwrap();
    (pipeline, rx)
}

/// Submits with retries on `Busy` (the gateway would answer busy; a test just retries).
fn submit_all(mut submitter: seqd::pipeline::Submitter, connection: u64, commands: Vec<Command>) -> u64 {
    let mut busy = 0;
    for (i, command) in commands.into_iter().enumerate() {
        let origin = Origin { connection, request_id: i as u64 + 1 };
        loop {
            match submitter.try_submit(command, origin, 1_000 + i as u64) {
                Ok(()) => break,
                Err(SubmitError::Busy) => {
                    busy += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    busy
}

#[test]
fn two_producers_every_command_delivered_once_in_order_after_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let workload = exchange_core_mix(WorkloadSpec { accounts: 50, resting_orders: 200, commands: 20_000, seed: 4 });
    let (pipeline, rx) = start(dir.path(), 1024);

    // Reference data and accounts first (from one producer), then the mix split over two.
    submit_all(pipeline.submitter(), 0, workload.setup.clone());
    let (a, b): (Vec<_>, Vec<_>) = workload.commands.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let a: Vec<Command> = a.into_iter().map(|(_, c)| *c).collect();
    let b: Vec<Command> = b.into_iter().map(|(_, c)| *c).collect();
    let (count_a, count_b) = (a.len(), b.len());
    let (sa, sb) = (pipeline.submitter(), pipeline.submitter());
    let ta = std::thread::spawn(move || submit_all(sa, 1, a));
    let tb = std::thread::spawn(move || submit_all(sb, 2, b));
    ta.join().unwrap();
    tb.join().unwrap();
    let engine = pipeline.shutdown().unwrap();

    let deliveries: Vec<Delivery> = rx.try_iter().collect();
    let total = workload.setup.len() + count_a + count_b;
    assert_eq!(deliveries.len(), total, "every accepted command delivered exactly once");
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(d.seq, i as Seq + 1, "deliveries in sequence order");
        assert!(
            d.durable_at_delivery >= d.seq,
            "seq {} delivered before it was durable ({})",
            d.seq,
            d.durable_at_delivery
        );
    }
    // Per connection, request ids arrive in the order they were sent.
    for connection in [1, 2] {
        let ids: Vec<u64> =
            deliveries.iter().filter(|d| d.origin.connection == connection).map(|d| d.origin.request_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "connection {connection} reordered");
        assert_eq!(ids.len(), if connection == 1 { count_a } else { count_b });
    }

    // The journal replays to the pipeline's final state, and the event log and the delivered
    // events are exactly what a replay produces.
    let data_dir = DataDir::new(dir.path());
    let (_, outcome) = replay(&data_dir, ReplayOptions::default()).unwrap();
    assert_eq!(outcome.last_seq, total as Seq);
    assert_eq!(outcome.state_hash, engine.state_hash());
    let mut events_reader = EventLogReader::open(&data_dir.events(), 1).unwrap();
    let mut logged = Vec::new();
    let mut replayed = seqd::engine::Engine::new();
    apply_journal(&mut replayed, &data_dir.input(), None, false, |seq, _, events| {
        let d = &deliveries[seq as usize - 1];
        assert_eq!(d.events, events, "delivered events of seq {seq}");
        let (logged_seq, _) = events_reader.next(&mut logged).unwrap().expect("event record");
        assert_eq!(logged_seq, seq);
        assert_eq!(logged, events, "logged events of seq {seq}");
    })
    .unwrap();
}

#[test]
fn a_restarted_pipeline_continues_the_sequence_and_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let workload = exchange_core_mix(WorkloadSpec { accounts: 20, resting_orders: 50, commands: 3_000, seed: 9 });
    let (first_half, second_half) = workload.commands.split_at(1_500);

    let (pipeline, _rx) = start(dir.path(), 256);
    submit_all(pipeline.submitter(), 0, workload.setup.iter().chain(first_half).copied().collect());
    let before = pipeline.shutdown().unwrap();

    let (pipeline, rx) = start(dir.path(), 256);
    submit_all(pipeline.submitter(), 0, second_half.to_vec());
    let after = pipeline.shutdown().unwrap();
    let deliveries: Vec<Delivery> = rx.try_iter().collect();
    assert_eq!(deliveries.first().map(|d| d.seq), Some(before.last_seq() + 1));
    assert_eq!(after.last_seq(), before.last_seq() + second_half.len() as Seq);

    let (_, outcome) = replay(&DataDir::new(dir.path()), ReplayOptions::default()).unwrap();
    assert_eq!(outcome.state_hash, after.state_hash());
}

#[test]
fn a_ring_size_the_disruptor_cannot_take_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for ring_size in [8, 100] {
        let config = PipelineConfig { ring_size, ..PipelineConfig::default() };
        let (tx, _rx) = mpsc::channel();
        let responder = ChannelResponder { tx, stats: Arc::new(OnceLock::new()) };
        let error = Pipeline::start(&DataDir::new(dir.path()), config, responder).err().expect("refused");
        assert!(error.to_string().contains("power of two"), "{error}");
    }
}

#[test]
fn a_full_ring_answers_busy_and_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let workload = exchange_core_mix(WorkloadSpec { accounts: 10, resting_orders: 20, commands: 5_000, seed: 2 });
    let (pipeline, rx) = start(dir.path(), seqd::pipeline::MIN_RING_SIZE);
    let mut submitter = pipeline.submitter();
    let mut accepted = Vec::new();
    let mut busy = 0;
    for (i, command) in workload.setup.iter().chain(&workload.commands).enumerate() {
        match submitter.try_submit(*command, Origin { connection: 7, request_id: i as u64 }, 0) {
            Ok(()) => accepted.push(i as u64),
            Err(SubmitError::Busy) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    drop(submitter);
    pipeline.shutdown().unwrap();
    let delivered: Vec<u64> = rx.try_iter().map(|d| d.origin.request_id).collect();
    assert!(busy > 0, "a 64-slot ring under a tight loop must fill at least once");
    assert_eq!(delivered, accepted, "exactly the accepted commands, in order");
}

#[test]
fn queries_see_every_command_before_them_and_are_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let session = seqd::testkit::scenario::scripted_session();
    let (pipeline, rx) = start(dir.path(), 64);
    let mut submitter = pipeline.submitter();
    let query_origin = |id| Origin { connection: 99, request_id: id };
    for (i, command) in session.iter().enumerate() {
        while submitter.try_submit(*command, Origin { connection: 1, request_id: i as u64 }, 0).is_err() {}
    }
    let queries = [
        Query::Balances { account: AccountId(11) },
        Query::SubtreeTotals { account: AccountId(1) },
        Query::OpenOrders { account: AccountId(2) },
        Query::Depth { symbol: SymbolId(1), levels: 10 },
        Query::Order { order_id: OrderId(999_999) },
        Query::Balances { account: AccountId(424_242) },
    ];
    for (i, query) in queries.iter().enumerate() {
        while submitter.try_query(*query, query_origin(i as u64), 0).is_err() {}
    }
    drop(submitter);
    let engine = pipeline.shutdown().unwrap();
    let answers: Vec<Delivery> = rx.try_iter().filter(|d| d.origin.connection == 99).collect();
    assert_eq!(answers.len(), queries.len());
    for d in &answers {
        assert_eq!(d.seq, session.len() as Seq, "an answer reflects every command submitted before it");
        assert!(d.durable_at_delivery >= d.seq);
    }
    assert_eq!(answers[0].answer, Some(QueryAnswer::Balances(engine.balances(AccountId(11)))));
    assert_eq!(answers[1].answer, Some(QueryAnswer::SubtreeTotals(engine.subtree_totals(AccountId(1)))));
    assert_eq!(answers[2].answer, Some(QueryAnswer::OpenOrders(engine.open_orders(AccountId(2)))));
    assert_eq!(answers[3].answer, Some(QueryAnswer::Depth(engine.depth(SymbolId(1), 10))));
    assert_eq!(answers[4].answer, Some(QueryAnswer::Order(None)));
    assert_eq!(answers[5].answer, Some(QueryAnswer::Balances(None)));
    // Queries take no sequence: the journal holds exactly the session.
    let report = seqd::storage::journal::verify(&DataDir::new(dir.path()).input()).unwrap();
    assert_eq!(report.last_seq, session.len() as Seq);
    let events = seqd::storage::journal::verify(&DataDir::new(dir.path()).events()).unwrap();
    assert_eq!(events.last_seq, session.len() as Seq);
}
