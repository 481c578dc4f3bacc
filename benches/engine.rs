//! Criterion benchmark of `Engine::apply` on exchange-core's mix (see `seqd::testkit::workload`).
//! The scriptable figures with latency percentiles come from `seqd-bench engine --json`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seqd::engine::Seq;
use seqd::testkit::workload::{exchange_core_mix, WorkloadSpec};

fn engine_apply(c: &mut Criterion) {
    let spec = WorkloadSpec { commands: 100_000, ..WorkloadSpec::default() };
    let workload = exchange_core_mix(spec);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(workload.commands.len() as u64));
    group.sample_size(20);
    group.bench_function("exchange_core_mix_100k", |b| {
        b.iter_batched(
            || workload.prepared_engine(),
            |(mut engine, first_seq)| {
                let mut events = Vec::with_capacity(1024);
                for (i, command) in workload.commands.iter().enumerate() {
                    events.clear();
                    engine.apply(first_seq + i as Seq, 0, command, &mut events);
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, engine_apply);
criterion_main!(benches);
