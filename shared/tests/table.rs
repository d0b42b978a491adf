//! The table's behaviour: enrollment, editing, classification, capacity.

mod common;

use common::{Rng, header, random_table, species};
use sporeprint_shared::table::MAX_SPECIES;
use sporeprint_shared::table::{NewSpecies, TableError};
use sporeprint_shared::{Edibility, Metric, Name, Origin, Table, vector};

fn axis(dim: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[i] = 1.0;
    v
}

/// Four species on the axes of a 4-d space.
fn axes_table() -> Table {
    let mut table = Table::new(header(4));
    let kinds = [
        ("field mushroom", Edibility::Edible),
        ("yellow stainer", Edibility::Poisonous),
        ("death cap", Edibility::Deadly),
        ("bitter bolete", Edibility::Inedible),
    ];
    for (i, (name, edibility)) in kinds.into_iter().enumerate() {
        table.add_species(species(name, edibility), &[axis(4, i)]).unwrap();
    }
    table
}

#[test]
fn enrollment_creates_a_species_with_its_statistics() {
    let mut table = Table::new(header(2));
    let entry = table.add_species(species("cep", Edibility::Edible), &[vec![1.0, 0.0], vec![0.0, 1.0]]).unwrap();
    assert_eq!(entry.prototype.shots, 2);
    assert_eq!(entry.revision, 1);
    assert!((entry.prototype.vector[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    let each_shot = (2.0 - std::f32::consts::SQRT_2).sqrt();
    assert!((entry.spread(Metric::Euclidean) - each_shot).abs() < 1e-5);
    assert_eq!(table.header().revision, 1);
}

#[test]
fn adding_shots_updates_mean_count_spread_and_revisions() {
    let mut table = Table::new(header(2));
    table.add_species(species("cep", Edibility::Edible), &[vec![1.0, 0.0]]).unwrap();
    assert_eq!(table.get("cep").unwrap().spread(Metric::Euclidean), 0.0);
    let entry = table.add_shots("CEP", &[vec![0.0, 5.0]], Origin::Device(7)).unwrap();
    assert_eq!(entry.prototype.shots, 2);
    // New shots are not an edit of the name: the revision and origin stay, the device's shots
    // are kept apart from the host's.
    assert_eq!((entry.revision, entry.origin), (1, Origin::Host));
    let sources: Vec<_> = entry.sources.iter().map(|s| (s.origin, s.prototype.shots)).collect();
    assert_eq!(sources, [(Origin::Host, 1), (Origin::Device(7), 1)]);
    assert!((entry.prototype.vector[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert!(entry.spread(Metric::Euclidean) > 0.7);
    assert_eq!(table.header().revision, 2);
}

#[test]
fn names_are_unique_case_insensitively() {
    let mut table = axes_table();
    let err = table.add_species(species("Death Cap", Edibility::Deadly), &[axis(4, 0)]).unwrap_err();
    assert_eq!(err, TableError::DuplicateName("death cap".into()));
    assert_eq!(err.to_string(), "a species named \"death cap\" is already in the table");
    let err = table.rename("field mushroom", Name::new("DEATH CAP").unwrap()).unwrap_err();
    assert_eq!(err, TableError::DuplicateName("death cap".into()));
    // Renaming to a different spelling of its own name is allowed.
    table.rename("field mushroom", Name::new("Field Mushroom").unwrap()).unwrap();
    assert_eq!(table.entries()[0].name.as_str(), "Field Mushroom");
}

#[test]
fn rename_keeps_the_id_and_bumps_the_revision() {
    let mut table = axes_table();
    let before = table.get("bitter bolete").unwrap().clone();
    table.rename("bitter bolete", Name::new("Tylopilus felleus").unwrap()).unwrap();
    let after = table.get("Tylopilus felleus").unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.revision, before.revision + 1);
    assert!(table.get("bitter bolete").is_none());
    // A new species under the old name gets a new id, not the renamed one's.
    let new = table.add_species(species("bitter bolete", Edibility::Inedible), &[axis(4, 3)]).unwrap();
    assert_ne!(new.id, before.id);
}

#[test]
fn unknown_names_and_bad_shots_are_refused() {
    let mut table = axes_table();
    assert_eq!(table.remove("chanterelle").unwrap_err(), TableError::UnknownSpecies("chanterelle".into()));
    assert!(matches!(
        table.add_shots("death cap", &[vec![1.0; 3]], Origin::Host),
        Err(TableError::Shots(sporeprint_shared::prototype::ShotError::DimensionMismatch { .. }))
    ));
    let none: [Vec<f32>; 0] = [];
    assert!(table.add_species(species("chanterelle", Edibility::Edible), &none).is_err());
    assert_eq!(table.len(), 4);
    let removed = table.remove("Death cap").unwrap();
    assert_eq!(removed.name.as_str(), "death cap");
    assert_eq!(table.len(), 3);
}

#[test]
fn identify_ranks_by_distance_with_confidences() {
    let table = axes_table();
    let query = [0.9, 0.1, 0.3, 0.0];
    let answer = table.identify(&query, 3).unwrap();
    let names: Vec<&str> = answer.top.iter().map(|m| table.entries()[m.index].name.as_str()).collect();
    assert_eq!(names, ["field mushroom", "death cap", "yellow stainer"]);
    let mut unit = query.to_vec();
    vector::l2_normalize(&mut unit);
    for m in &answer.top {
        let expected = vector::euclidean(&unit, &table.entries()[m.index].prototype.vector);
        assert!((m.distance - expected).abs() < 1e-6);
    }
    assert!(answer.top.windows(2).all(|w| w[0].confidence >= w[1].confidence));
    // Confidences over all species sum to 1.
    let all = table.identify(&query, 16).unwrap();
    assert_eq!(all.top.len(), 4);
    let total: f32 = all.top.iter().map(|m| m.confidence).sum();
    assert!((total - 1.0).abs() < 1e-5, "confidences sum to {total}");
    assert!(!answer.unknown);
    assert_eq!(answer.species().unwrap().index, 0);
}

#[test]
fn far_queries_are_unknown_species() {
    let mut table = axes_table();
    table.set_open_set_threshold(0.5);
    let near = table.identify(&[1.0, 0.05, 0.0, 0.0], 3).unwrap();
    assert!(!near.unknown);
    // Equidistant from everything: 0.5 from each axis in angle terms, far beyond the threshold.
    let far = table.identify(&[1.0, 1.0, 1.0, 1.0], 3).unwrap();
    assert!(far.unknown);
    assert!(far.species().is_none());
    assert_eq!(far.top.len(), 3, "the nearest are still reported for display");
    assert!(Table::new(header(4)).identify(&[1.0, 0.0, 0.0, 0.0], 3).unwrap().unknown);
}

#[test]
fn an_atypical_photo_near_a_species_is_unknown_and_a_typical_one_is_not() {
    let mut table = axes_table();
    table.set_open_set_threshold(0.5);
    let query = [1.0, 0.3, 0.0, 0.0];
    let plain = table.identify(&query, 3).unwrap();
    let distance = plain.top[0].distance;
    assert!(distance < 0.5 && !plain.unknown, "{distance}");
    // The rule compares distance + atypicality with the threshold; the ranking is the distance's.
    let atypical = table.identify_with(&query, 0.5 - distance + 0.01, 3).unwrap();
    assert!(atypical.unknown && atypical.species().is_none());
    assert!(atypical.unknown_by_atypicality && !plain.unknown_by_atypicality);
    assert_eq!(atypical.top, plain.top);
    assert!((atypical.atypicality - (0.51 - distance)).abs() < 1e-6);
    let typical = table.identify_with(&query, 0.5 - distance - 0.01, 3).unwrap();
    assert!(!typical.unknown);
    // A very typical photo (negative atypicality) may lie a little farther.
    let far = [1.0, 0.9, 0.0, 0.0];
    let far_alone = table.identify(&far, 1).unwrap();
    assert!(far_alone.unknown && !far_alone.unknown_by_atypicality, "the distance alone decided");
    assert!(!table.identify_with(&far, -0.3, 1).unwrap().unknown);
    assert_eq!(table.identify_with(&query, 0.0, 3).unwrap(), plain);
}

#[test]
fn lookalike_warning_when_a_dangerous_species_is_close_behind_an_edible_answer() {
    let mut table = axes_table();
    table.set_lookalike_margin(0.2);
    // Edible top-1, deadly a little farther (within margin).
    let close = table.identify(&[1.0, 0.0, 0.9, 0.0], 1).unwrap();
    assert_eq!(close.top[0].index, 0);
    let warning = close.lookalike.expect("death cap is close behind");
    assert_eq!(table.entries()[warning.index].name.as_str(), "death cap");
    assert!(warning.distance > close.top[0].distance);
    // Found although top_k = 1 does not show it.
    assert_eq!(close.top.len(), 1);
    // The same edible answer with the dangerous species far away: no warning.
    assert_eq!(table.identify(&[1.0, 0.0, 0.1, 0.0], 3).unwrap().lookalike, None);
    // A dangerous answer is not a look-alike of itself.
    assert_eq!(table.identify(&[0.0, 0.0, 1.0, 0.9], 3).unwrap().lookalike, None);
    // An inedible answer carries no edible promise to warn about.
    assert_eq!(table.identify(&[0.0, 0.0, 0.8, 1.0], 3).unwrap().lookalike, None);
}

#[test]
fn wrong_query_dimension_is_an_error() {
    let table = axes_table();
    assert_eq!(table.identify(&[1.0, 0.0], 3).unwrap_err(), TableError::DimensionMismatch { expected: 4, found: 2 });
}

#[test]
fn a_full_table_refuses_one_more_species_and_keeps_what_it_has() {
    let mut rng = Rng(5);
    let mut table = random_table(11, 0, 4);
    for i in 0..MAX_SPECIES {
        table.add_species(species(&format!("species {i}"), Edibility::Edible), &[rng.unit_vector(4)]).unwrap();
    }
    let full = table.add_species(species("one too many", Edibility::Edible), &[rng.unit_vector(4)]);
    assert_eq!(full.unwrap_err(), TableError::Full { capacity: MAX_SPECIES });
    assert_eq!(table.len(), MAX_SPECIES);
    table.validate().unwrap();
}

#[test]
fn ties_keep_table_order() {
    let mut table = Table::new(header(2));
    for name in ["a", "b", "c"] {
        table
            .add_species(
                NewSpecies {
                    name: Name::new(name).unwrap(),
                    scientific_name: None,
                    genus: None,
                    edibility: Edibility::Unknown,
                    origin: Origin::Host,
                },
                &[vec![1.0, 0.0]],
            )
            .unwrap();
    }
    let answer = table.identify(&[1.0, 0.0], 2).unwrap();
    assert_eq!(answer.top.iter().map(|m| m.index).collect::<Vec<_>>(), [0, 1]);
}
