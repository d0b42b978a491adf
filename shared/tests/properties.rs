//! Properties that must hold for any input.

mod common;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sporeprint_shared::prototype::Prototype;
use sporeprint_shared::{format, vector};

fn embedding(dim: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-10.0f32..10.0, dim)
}

fn nonzero(dim: usize) -> impl Strategy<Value = Vec<f32>> {
    embedding(dim).prop_filter("needs a direction", |v| vector::norm(v) > 1e-3)
}

fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (1usize..70).prop_flat_map(|d| (embedding(d), embedding(d)))
}

fn close(a: f32, b: f32, tolerance: f32) -> bool {
    (a - b).abs() <= tolerance * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    // Integration tests have no lib.rs for proptest to find: name the regressions file.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/properties.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn distances_are_symmetric_and_zero_on_the_diagonal((a, b) in pair()) {
        prop_assert_eq!(vector::squared_euclidean(&a, &a), 0.0);
        prop_assert!(close(vector::squared_euclidean(&a, &b), vector::squared_euclidean(&b, &a), 1e-6));
        prop_assert!(vector::euclidean(&a, &b) >= 0.0);
    }

    #[test]
    fn chunked_sums_equal_the_plain_definition((a, b) in pair()) {
        let plain_dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let plain_sq: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
        let scale: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum::<f64>() + 1.0;
        prop_assert!(((vector::dot(&a, &b) as f64) - plain_dot).abs() <= 1e-5 * scale);
        prop_assert!(((vector::squared_euclidean(&a, &b) as f64) - plain_sq).abs() <= 1e-5 * (plain_sq + 1.0));
    }

    #[test]
    fn triangle_inequality(dim in 1usize..40, seed in any::<u64>()) {
        let mut rng = common::Rng(seed);
        let (a, b, c) = (rng.unit_vector(dim), rng.unit_vector(dim), rng.unit_vector(dim));
        let (ab, bc, ac) = (vector::euclidean(&a, &b), vector::euclidean(&b, &c), vector::euclidean(&a, &c));
        prop_assert!(ac <= ab + bc + 1e-5);
    }

    #[test]
    fn normalised_vectors_have_unit_length_and_keep_their_direction(v in (1usize..70).prop_flat_map(nonzero)) {
        let mut unit = v.clone();
        let length = vector::l2_normalize(&mut unit);
        prop_assert!(close(length, vector::norm(&v), 1e-5));
        prop_assert!(close(vector::norm(&unit), 1.0, 1e-5));
        prop_assert!(close(vector::cosine_similarity(&unit, &v), 1.0, 1e-5));
        // For unit vectors: |a - b|^2 = 2 - 2 cos(a, b).
        let mut other: Vec<f32> = v.iter().rev().copied().collect();
        if vector::l2_normalize(&mut other) > 0.0 {
            let identity = 2.0 - 2.0 * vector::dot(&unit, &other);
            prop_assert!((vector::squared_euclidean(&unit, &other) - identity).abs() < 1e-4);
        }
    }

    #[test]
    fn cosine_similarity_is_bounded_and_scale_invariant((a, b) in pair(), scale in 0.01f32..100.0) {
        let c = vector::cosine_similarity(&a, &b);
        prop_assert!((-1.0 - 1e-5..=1.0 + 1e-5).contains(&c));
        let scaled: Vec<f32> = a.iter().map(|x| x * scale).collect();
        prop_assert!((vector::cosine_similarity(&scaled, &b) - c).abs() < 1e-4);
    }

    /// Enrolling shots in any batches gives the prototype of enrolling them all at once.
    #[test]
    fn running_mean_equals_batch_mean(
        shots in (2usize..20).prop_flat_map(|dim| prop::collection::vec(nonzero(dim), 2..12)),
        split in any::<prop::sample::Index>(),
    ) {
        let dim = shots[0].len();
        let at = 1 + split.index(shots.len() - 1);
        let Ok(all) = Prototype::from_shots(&shots, dim) else { return Ok(()) };
        prop_assume!(all.mean_norm > 1e-2);
        let mut running = Prototype::from_shots(&shots[..at], dim).unwrap();
        running.add_shots(&shots[at..]).unwrap();
        prop_assert_eq!(running.shots, all.shots);
        prop_assert!(close(running.mean_norm, all.mean_norm, 1e-4));
        prop_assert!(vector::euclidean(&running.vector, &all.vector) < 1e-3);

        // And the batch mean is what the definition says: the direction of the mean unit shot.
        let units: Vec<Vec<f32>> = shots.iter().map(|s| { let mut u = s.clone(); vector::l2_normalize(&mut u); u }).collect();
        let mut mean = vector::mean(&units).unwrap();
        let mean_norm = vector::l2_normalize(&mut mean);
        prop_assert!(close(all.mean_norm, mean_norm, 1e-4));
        prop_assert!(vector::euclidean(&all.vector, &mean) < 1e-3);
        // The spread formula equals the measured root-mean-square distance of the shots.
        let rms = (units.iter().map(|u| vector::squared_euclidean(u, &all.vector)).sum::<f32>() / units.len() as f32).sqrt();
        prop_assert!((all.spread(sporeprint_shared::Metric::Euclidean) - rms).abs() < 2e-3);
    }

    #[test]
    fn any_table_round_trips(seed in any::<u64>(), count in 0usize..20, dim in 1u32..48) {
        let table = common::random_table(seed, count, dim);
        let decoded = format::decode(&format::encode(&table)).unwrap();
        prop_assert_eq!(decoded, table);
    }

    #[test]
    fn garbage_never_decodes_as_a_table(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(format::decode(&bytes).is_err());
    }
}
