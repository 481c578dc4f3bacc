//! The cluster as real processes (issue #11): three `seqd run --config` nodes on loopback with
//! short election timeouts (300 ms, heartbeats 50 ms), killed, paused, cut off (the node
//! transport's fault switch), stopped, corrupted and restarted while clients load them. What must hold every time: an acknowledged command is in
//! every node's input journal exactly once at the sequence it was acknowledged with, nothing is
//! applied twice, and all nodes replay to the same state hash.
//!
//! Sizes (environment): `SEQD_CLUSTER_KILLS` leader kills (20), `SEQD_CLUSTER_BEHIND_COMMANDS`
//! commands a stopped follower misses (100,000: about 30 s in a debug build on 2 cores).

#[path = "common/cluster.rs"]
mod common;

use common::*;
use seqd::client::ClientError;
use seqd::engine::{AccountId, Command, RejectReason};
use seqd::protocol::Message;
use seqd::testkit::workload::USDT;
use std::time::{Duration, Instant};

#[test]
fn leader_sigkilled_repeatedly_loses_nothing() {
    let kills = env_u64("SEQD_CLUSTER_KILLS", 20);
    let started = Instant::now();
    let mut cluster = start(ClusterOptions::default());
    let mut acked = runtime().block_on(set_up_venue(cluster.view()));
    let load = Load::start(cluster.view().clone(), 1, 1_000_000, 8);
    // Beside it, the client library following the leader by itself, one command at a time.
    let client_load = ClientLoad::start(cluster.view().clone(), 3, 5_000_000);
    let mut since = 0;
    for kill in 0..kills {
        // The cluster serves again after every failover: commands acknowledged since the last.
        since = load.wait_acked(since, 20, LEADER_TIMEOUT).unwrap_or_else(|e| panic!("before kill {kill}: {e}"));
        let leader = cluster.leader();
        cluster.kill(leader);
        let successor = cluster.leader();
        assert_ne!(successor, leader, "kill {kill}");
        cluster.start_node(leader).unwrap_or_else(|e| panic!("restart of node {leader} after kill {kill}: {e}"));
    }
    load.wait_acked(since, 20, LEADER_TIMEOUT).unwrap_or_else(|e| panic!("after the last kill: {e}"));
    let record = load.stop();
    let client_record = client_load.stop();
    assert!(client_record.delivered.len() > kills as usize, "client library: {client_record:?}");
    let last_seq = cluster.stop_and_compare();
    acked.extend(record.acked.iter().copied());
    acked.extend(client_record.delivered.iter().copied());
    cluster.check_journals(&acked);
    eprintln!(
        "{kills} leader kills: {} commands acknowledged, {} of unknown outcome, refused {:?}, {} connections, last seq {last_seq}, {:.1} s",
        record.acked.len(),
        record.unknown,
        record.refused,
        record.connections,
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "client library: {} delivered ({} applied before), {} errors, {} resends, keyed: {}",
        client_record.delivered.len(),
        client_record.applied_before,
        client_record.errors,
        client_record.resends,
        client_record.keyed
    );
}

#[test]
fn leader_cut_off_by_the_fault_switch_steps_down_and_acknowledges_nothing() {
    let mut cluster = start(ClusterOptions::default());
    let runtime = runtime();
    runtime.block_on(set_up_venue(cluster.view()));
    let old = cluster.leader();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != old).collect();
    let admin = cluster.view().credentials("admin").unwrap();
    let deposit = |external_ref| Command::Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref };
    let mut stale = runtime.block_on(admin.connect(cluster.addrs(old).client)).unwrap();
    assert_eq!(runtime.block_on(stale.command(deposit(600))).unwrap().rejected(), None);

    // The switch drops every node frame of the leader, which keeps running and keeps its
    // clients: unlike a paused process, it goes on proposing and must still never acknowledge.
    cluster.isolate(old, true);
    // The node looks at the switch at most every 10 ms (`cluster::transport::isolated`): a
    // command sent sooner could still be committed, legitimately, before the cut.
    std::thread::sleep(Duration::from_millis(100));
    let cut_off = deposit(601);
    let request_id = runtime.block_on(stale.send(&Message::Command(cut_off))).unwrap();
    let answer = runtime.block_on(answer_within(&mut stale, request_id, Duration::from_secs(10)));
    eprintln!("the cut-off leader's answer: {answer:?}");
    assert!(
        matches!(answer, Some(Message::Error { code: 931, .. })),
        "a leader cut off from the majority must step down and answer 931, not {answer:?}"
    );
    // Meanwhile the majority elected a leader of a later term, which serves.
    let new = cluster.view().wait_leader_among(&others, LEADER_TIMEOUT).unwrap();
    runtime.block_on(async {
        let mut client = admin.connect(cluster.addrs(new).client).await.unwrap();
        assert_eq!(client.command(deposit(602)).await.unwrap().rejected(), None);
        client.close().await;
    });
    let status = cluster.status(old).unwrap();
    assert_ne!(status.role.as_str(), "leader", "the cut-off node still claims to lead: {status:?}");

    // Reconnected, it follows the new leader; its unacknowledged proposal is gone everywhere.
    cluster.isolate(old, false);
    let deadline = Instant::now() + LEADER_TIMEOUT;
    loop {
        let status = cluster.status(old).unwrap();
        if status.role == "follower" && status.leader_id == new {
            break;
        }
        assert!(Instant::now() < deadline, "the reconnected node did not follow node {new}: {status:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime.block_on(stale.close());
    cluster.stop_and_compare();
    for id in cluster.ids() {
        let journal = journal_commands(cluster.data_dir(id)).unwrap();
        assert!(!journal.values().any(|c| *c == cut_off), "node {id}: the cut-off leader's command was sequenced");
        assert!(journal.values().any(|c| *c == deposit(602)), "node {id}: the new leader's command is missing");
    }
}

#[test]
fn isolated_leader_steps_down() {
    let mut cluster = start(ClusterOptions::default());
    let runtime = runtime();
    runtime.block_on(set_up_venue(cluster.view()));
    let old = cluster.leader();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != old).collect();
    let admin = cluster.view().credentials("admin").unwrap();
    let deposit = |external_ref| Command::Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref };
    // A connection to the leader made while it leads; it serves.
    let mut stale = runtime.block_on(admin.connect(cluster.addrs(old).client)).unwrap();
    let outcome = runtime.block_on(stale.command(deposit(500))).unwrap();
    assert_eq!(outcome.rejected(), None);

    // SIGSTOP: to the others the leader is cut off. They elect one of themselves and serve.
    cluster.pause(old);
    let new = cluster.view().wait_leader_among(&others, LEADER_TIMEOUT).unwrap();
    assert_ne!(new, old);
    runtime.block_on(async {
        let mut client = admin.connect(cluster.addrs(new).client).await.unwrap();
        let outcome = client.command(deposit(501)).await.unwrap();
        assert_eq!(outcome.rejected(), None);
        client.close().await;
    });

    // A command sent to the old leader while it is paused waits in its socket; it reads it on
    // waking, still believing it leads. It must never acknowledge it: it cannot commit it.
    let isolated = deposit(502);
    let request_id = runtime.block_on(stale.send(&Message::Command(isolated))).unwrap();
    cluster.resume(old);
    // Silence (a timeout, a closed connection) is `None`.
    let answer = runtime.block_on(answer_within(&mut stale, request_id, Duration::from_secs(5)));
    eprintln!("the isolated old leader's answer on waking: {answer:?}");
    match &answer {
        None | Some(Message::Error { code: 931, .. }) => {}
        Some(other) => panic!("the isolated old leader answered {other:?} (only 931 or silence may come)"),
    }

    // It rejoins as a follower and refuses commands, naming the leader.
    let leader = cluster.leader();
    let status = cluster.status(old).unwrap();
    assert_eq!((status.role.as_str(), status.leader_id), ("follower", leader), "{status:?}");
    runtime.block_on(async {
        let mut client = admin.connect(cluster.addrs(old).client).await.unwrap();
        match client.command(deposit(503)).await {
            Err(ClientError::Refused { code: 931, message }) => {
                let named = cluster.addrs(leader).client.to_string();
                assert!(message.contains(&format!("leader={named}")), "{message}");
            }
            other => panic!("a follower answered a command with {other:?}"),
        }
        client.close().await;
    });
    cluster.stop_and_compare();
    for id in cluster.ids() {
        let journal = journal_commands(cluster.data_dir(id)).unwrap();
        assert!(
            !journal.values().any(|c| *c == isolated || *c == deposit(503)),
            "node {id}: a command given to a node that was not the leader was sequenced"
        );
        assert!(journal.values().any(|c| *c == deposit(501)), "node {id}: the new leader's command is missing");
    }
}

#[test]
fn follower_rejoins_after_falling_far_behind() {
    let behind = env_u64("SEQD_CLUSTER_BEHIND_COMMANDS", 100_000);
    // Snapshots every 10,000 commands and a log of 10 entries behind them: the leader compacts
    // past the stopped follower, which must catch up by snapshot (and then the log).
    let mut cluster = start(ClusterOptions {
        log_entries_kept: 10,
        extra_toml: "[snapshots]\nevery_commands = 10000\n".into(),
        ..ClusterOptions::default()
    });
    let runtime = runtime();
    let mut acked = runtime.block_on(set_up_venue(cluster.view()));
    let leader = cluster.leader();
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    assert!(cluster.terminate(follower).success());

    let pushed = Instant::now();
    acked.extend(runtime.block_on(blast(cluster.view(), 2, 1_000_000, 0, behind, 256)));
    let push_s = pushed.elapsed().as_secs_f64();
    let leader = cluster.leader();
    let leader_seq = cluster.status(leader).unwrap().applied_seq;
    assert!(leader_seq >= behind, "leader applied {leader_seq}");

    let rejoined = Instant::now();
    cluster.start_node(follower).unwrap();
    cluster.converged();
    let catch_up_s = rejoined.elapsed().as_secs_f64();
    let last_seq = cluster.stop_and_compare();
    assert_eq!(last_seq, leader_seq);
    let first_kept =
        first_journal_seq(&seqd::storage::replay::DataDir::new(cluster.data_dir(follower)).input()).unwrap();
    eprintln!(
        "{behind} commands pushed past a stopped follower in {push_s:.1} s ({:.0}/s); it caught up to seq {last_seq} in {catch_up_s:.1} s; its journal starts at {first_kept:?}",
        behind as f64 / push_s
    );
    assert!(
        first_kept.is_some_and(|seq| seq > 1),
        "the follower did not catch up by snapshot: journal from {first_kept:?}"
    );
    // The follower's journal holds what it took from the log after the snapshot (nothing, if
    // the snapshot was at the last sequence); every node's full journal holds every
    // acknowledgement.
    for id in cluster.ids() {
        let journal = journal_commands(cluster.data_dir(id)).unwrap();
        let input = seqd::storage::replay::DataDir::new(cluster.data_dir(id)).input();
        let from = first_journal_seq(&input).unwrap().unwrap_or(1);
        let tail: Vec<(u64, Command)> = acked.iter().copied().filter(|(seq, _)| *seq >= from).collect();
        check_acknowledged(&journal, &tail).unwrap_or_else(|e| panic!("node {id}: {e}"));
        check_no_duplicates(&journal).unwrap_or_else(|e| panic!("node {id}: {e}"));
    }
}

#[test]
fn whole_cluster_restart() {
    let mut cluster = start(ClusterOptions::default());
    let runtime = runtime();
    let mut acked = runtime.block_on(set_up_venue(cluster.view()));
    let load = Load::start(cluster.view().clone(), 1, 1_000_000, 8);
    load.wait_acked(0, 300, LEADER_TIMEOUT).unwrap();
    // SIGTERM to every node under load.
    cluster.stop_all().unwrap_or_else(|e| panic!("stop under load: {e}"));
    let record = load.stop();
    acked.extend(record.acked.iter().copied());
    let stopped_seq = acked.iter().map(|(seq, _)| *seq).max().unwrap();

    cluster.start_all().unwrap();
    let leader = cluster.leader();
    let outcome = runtime.block_on(async {
        let (_, mut client) = cluster.view().connect_leader("admin", LEADER_TIMEOUT).await.unwrap();
        let command = Command::Deposit { account: AccountId(2), asset: USDT, amount: 1, external_ref: 9_000_000 };
        let outcome = client.command(command).await.unwrap();
        acked.push((outcome.seq, command));
        client.close().await;
        outcome
    });
    assert_eq!(outcome.rejected(), None);
    assert!(outcome.seq > stopped_seq, "seq {} after a restart at {stopped_seq}", outcome.seq);
    assert_eq!(cluster.stop_and_compare(), outcome.seq);
    cluster.check_journals(&acked);
    eprintln!(
        "restart under load: {} acknowledged before the stop, then leader {leader} served seq {}",
        record.acked.len(),
        outcome.seq
    );
}

#[test]
fn corrupted_journal_is_refused() {
    let mut cluster = start(ClusterOptions { durability: "fsync".into(), ..ClusterOptions::default() });
    let runtime = runtime();
    runtime.block_on(set_up_venue(cluster.view()));
    runtime.block_on(blast(cluster.view(), 1, 1_000_000, 0, 300, 32));
    let leader = cluster.leader();
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    cluster.converged();
    cluster.stop_all().unwrap();

    // One follower's input journal, the other's Raft log (`<data>/raft/log`, the same segment
    // format): a flipped bit in the payload of a record in the middle.
    let input = seqd::storage::replay::DataDir::new(cluster.data_dir(followers[0])).input();
    let raft_log = cluster.data_dir(followers[1]).join("raft/log");
    for (follower, journal) in [(followers[0], input), (followers[1], raft_log)] {
        let (file, record) = middle_record(&journal).unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[record.offset as usize + 32 + record.payload_len_bytes / 2] ^= 0x04;
        std::fs::write(&file, bytes).unwrap();

        let (status, stderr) = cluster.start_node_expecting_failure(follower, Duration::from_secs(60)).unwrap();
        assert!(!status.success(), "node {follower}: {status}");
        let named = format!("{} at offset {}", file.display(), record.offset);
        assert!(stderr.contains(&named), "node {follower}: stderr does not name {named:?}:\n{stderr}");
    }
}

#[test]
fn retry_across_failover_is_applied_once() {
    let mut cluster = start(ClusterOptions::default());
    let runtime = runtime();
    runtime.block_on(set_up_venue(cluster.view()));
    let admin = cluster.view().credentials("admin").unwrap();
    // A resting buy without a client order id: the engine would place it again and again,
    // only the request key stops a second copy. Account 3 once committed before the kill,
    // account 4 killed at once (either outcome).
    for (account, request_key, committed_first) in [(3u64, 0x5eed_0003u64, true), (4, 0x5eed_0004, false)] {
        let command = buy(account, 200, 0);
        let leader = cluster.leader();
        let before = cluster.status(leader).unwrap().commit_index;
        let mut client = runtime.block_on(admin.connect(cluster.addrs(leader).client)).unwrap();
        runtime.block_on(client.send(&Message::KeyedCommand { request_key, command })).unwrap();
        if committed_first {
            // Committed and applied everywhere, answer not read. The runtime runs meanwhile:
            // quinn sends from a task on it.
            runtime.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(10);
                while cluster.status(leader).unwrap().commit_index <= before {
                    if Instant::now() >= deadline {
                        let answer = tokio::time::timeout(Duration::from_secs(1), client.next_message()).await;
                        let status = cluster.status(leader);
                        panic!("the keyed command did not commit within 10 s (commit index {before} before it, now {status:?}); the leader answered {answer:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            cluster.converged();
        }
        cluster.kill(leader);
        drop(client);
        let successor = cluster.leader();
        let retry = runtime.block_on(async {
            let mut client = admin.connect(cluster.addrs(successor).client).await.unwrap();
            let outcome = keyed_command(&mut client, request_key, command).await;
            client.close().await;
            outcome
        });
        let outcome = retry.unwrap_or_else(|e| panic!("account {account}: the retry was refused: {e}"));
        eprintln!(
            "account {account} ({}): the retry through node {successor} got seq {}, rejected {:?}",
            if committed_first { "committed before the kill" } else { "killed at once" },
            outcome.seq,
            outcome.rejected()
        );
        match outcome.rejected() {
            None => assert!(!committed_first, "account {account}: a committed keyed command was applied again"),
            Some(code) => assert_eq!(code, RejectReason::DuplicateRequest.code(), "account {account}"),
        }
        cluster.start_node(leader).unwrap();
    }
    cluster.converged();
    runtime.block_on(async {
        let (_, mut client) = cluster.view().connect_leader("admin", LEADER_TIMEOUT).await.unwrap();
        for account in [3, 4] {
            match client.request_all(&Message::QueryOpenOrders { account: AccountId(account) }).await.unwrap() {
                Message::OpenOrders { orders, .. } => assert_eq!(orders.len(), 1, "account {account}: {orders:?}"),
                other => panic!("{other:?}"),
            }
        }
        client.close().await;
    });
    cluster.stop_and_compare();
}
