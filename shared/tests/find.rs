//! Finds: several views of one mushroom combined into one query, on generated embeddings.

mod common;

use common::{Rng, random_table};
use sporeprint_shared::find::{self, View};
use sporeprint_shared::table::TableError;
use sporeprint_shared::vector;

fn views<'a>(embeddings: &'a [Vec<f32>], atypicalities: &[f32]) -> Vec<View<'a>> {
    embeddings.iter().zip(atypicalities).map(|(e, &a)| View { embedding: e, atypicality: a }).collect()
}

#[test]
fn a_find_is_identified_as_the_mean_of_its_unit_views() {
    let table = random_table(3, 30, 16);
    let mut rng = Rng(11);
    for species in 0..table.len() {
        let prototype = &table.entries()[species].prototype.vector;
        // Raw (not unit) views: each counts once whatever its length.
        let raw: Vec<Vec<f32>> =
            (0..3).map(|k| rng.near(prototype, 0.6).iter().map(|x| x * (1.0 + k as f32)).collect()).collect();
        let atypicalities = [0.1, -0.05, 0.3];
        let (combined, atypicality) = find::combine(&views(&raw, &atypicalities)).unwrap();

        let mut by_hand = vec![0.0f32; 16];
        for view in &raw {
            let mut unit = view.clone();
            vector::l2_normalize(&mut unit);
            by_hand.iter_mut().zip(&unit).for_each(|(s, u)| *s += u / 3.0);
        }
        vector::l2_normalize(&mut by_hand);
        assert!(vector::euclidean(&combined, &by_hand) < 1e-6, "species {species}");
        assert!((atypicality - 0.35 / 3.0).abs() < 1e-6);
        let (found, expected) = (
            table.identify_with(&combined, atypicality, 5).unwrap(),
            table.identify_with(&by_hand, 0.35 / 3.0, 5).unwrap(),
        );
        assert_eq!(found.unknown, expected.unknown);
        for (f, e) in found.top.iter().zip(&expected.top) {
            assert_eq!(f.index, e.index, "species {species}");
            assert!((f.distance - e.distance).abs() < 1e-5 && (f.confidence - e.confidence).abs() < 1e-5);
        }
    }
    // One view is that photo, normalised.
    let one = rng.unit_vector(16);
    let (combined, atypicality) = find::combine(&views(std::slice::from_ref(&one), &[0.2])).unwrap();
    assert!(vector::euclidean(&combined, &one) < 1e-6 && atypicality == 0.2);
}

/// What a find is for: three noisy views of a species are named right more often than one.
#[test]
fn three_views_are_right_more_often_than_one() {
    let table = random_table(5, 40, 16);
    let mut rng = Rng(17);
    let (mut single, mut found, mut trials) = (0, 0, 0);
    for _ in 0..10 {
        for species in 0..table.len() {
            let prototype = table.entries()[species].prototype.vector.clone();
            let shots: Vec<Vec<f32>> = (0..3).map(|_| rng.near(&prototype, 1.2)).collect();
            let named = |q: &[f32]| table.identify(q, 1).unwrap().top[0].index == species;
            single += usize::from(named(&shots[0]));
            let (combined, _) = find::combine(&views(&shots, &[0.0; 3])).unwrap();
            found += usize::from(named(&combined));
            trials += 1;
        }
    }
    let (single, found) = (single as f64 / trials as f64, found as f64 / trials as f64);
    assert!(found > single + 0.1, "one view {single:.3}, a find of three {found:.3}");
}

#[test]
fn a_find_that_cannot_be_answered_is_refused() {
    assert!(matches!(find::combine(&[]), Err(TableError::EmptyFind)));
    let (a, b) = (vec![1.0, 0.0, 0.0], vec![1.0, 0.0]);
    assert!(matches!(
        find::combine(&views(&[a.clone(), b], &[0.0, 0.0])),
        Err(TableError::DimensionMismatch { expected: 3, found: 2 })
    ));
    let nan = vec![f32::NAN, 0.0, 0.0];
    assert!(matches!(find::combine(&views(&[a.clone(), nan], &[0.0, 0.0])), Err(TableError::NotFinite(_))));
    assert!(matches!(find::combine(&views(&[a.clone(), a.clone()], &[0.0, f32::NAN])), Err(TableError::NotFinite(_))));
    let opposite = vec![-1.0, 0.0, 0.0];
    assert!(matches!(find::combine(&views(&[a, opposite], &[0.0, 0.0])), Err(TableError::NotFinite(_))));
}
