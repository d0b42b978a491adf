//! Embedding math and nearest-prototype search at device scale: 10 000 prototypes x 128 dims.
//! `cargo bench -p sporeprint-shared`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Edibility, Header, ModelFingerprint, Name, Origin, PreprocessSpec, Table, vector};
use std::hint::black_box;

const DIM: usize = 128;
const SPECIES: usize = 10_000;

fn pseudo_random(seed: usize, dim: usize) -> Vec<f32> {
    (0..dim).map(|i| (((seed * 7919 + i * 104_729) % 1000) as f32 / 500.0) - 1.0).collect()
}

fn table() -> Table {
    let header = Header::new(DIM as u32, ModelFingerprint::of_bytes(b"bench"), PreprocessSpec::EFFICIENTNET_LITE);
    let mut table = Table::new(header);
    for i in 0..SPECIES {
        let species = NewSpecies {
            name: Name::new(&format!("species {i}")).unwrap(),
            scientific_name: None,
            genus: None,
            edibility: Edibility::ALL[i % 5],
            origin: Origin::Host,
        };
        table.add_species(species, &[pseudo_random(i, DIM)]).unwrap();
    }
    table
}

fn math(c: &mut Criterion) {
    let prototypes: Vec<Vec<f32>> = (0..SPECIES).map(|i| pseudo_random(i, DIM)).collect();
    let query = pseudo_random(SPECIES + 1, DIM);
    let mut group = c.benchmark_group("10k x 128");
    group.throughput(Throughput::Elements(SPECIES as u64));
    group.bench_function("squared_euclidean", |b| {
        b.iter(|| prototypes.iter().map(|p| vector::squared_euclidean(black_box(&query), p)).sum::<f32>())
    });
    group.bench_function("cosine_similarity", |b| {
        b.iter(|| prototypes.iter().map(|p| vector::cosine_similarity(black_box(&query), p)).sum::<f32>())
    });
    group.bench_function("l2_normalize", |b| {
        let mut copy = prototypes.clone();
        b.iter(|| copy.iter_mut().map(|p| vector::l2_normalize(black_box(p))).sum::<f32>())
    });
    group.bench_function("mean", |b| b.iter(|| vector::mean(black_box(&prototypes))));
    group.finish();
}

fn search(c: &mut Criterion) {
    let table = table();
    let query = pseudo_random(SPECIES + 1, DIM);
    let mut group = c.benchmark_group("identify 10k x 128");
    group.throughput(Throughput::Elements(SPECIES as u64));
    for k in [1, 5] {
        group.bench_with_input(BenchmarkId::new("top", k), &k, |b, &k| b.iter(|| table.identify(black_box(&query), k)));
    }
    group.finish();
}

criterion_group!(benches, math, search);
criterion_main!(benches);
