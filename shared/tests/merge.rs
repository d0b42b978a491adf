//! Merging tables that changed apart: nothing lost, nothing counted twice, and the same result
//! whichever side merges.

mod common;

use common::{Rng, header, random_table, species};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sporeprint_shared::merge::{MergeError, merge};
use sporeprint_shared::{Edibility, ModelFingerprint, Name, Origin, Table};

fn shots(rng: &mut Rng, n: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..n).map(|_| rng.unit_vector(dim)).collect()
}

fn shots_by(table: &Table, name: &str) -> Vec<(Origin, u32)> {
    table.get(name).unwrap().sources.iter().map(|s| (s.origin, s.prototype.shots)).collect()
}

#[test]
fn new_shots_on_both_sides_are_all_kept_and_old_ones_not_counted_twice() {
    let mut rng = Rng(1);
    let ancestor = random_table(1, 5, 8);
    let (mut host, mut device) = (ancestor.clone(), ancestor.clone());
    host.add_shots("species 2", &shots(&mut rng, 2, 8), Origin::Host).unwrap();
    device.add_shots("species 2", &shots(&mut rng, 4, 8), Origin::Device(7)).unwrap();
    let merged = merge(&host, &device).unwrap();
    assert_eq!(shots_by(&merged, "species 2"), [(Origin::Host, 3 + 2), (Origin::Device(7), 4)]);
    assert_eq!(merged.get("species 2").unwrap().prototype.shots, 9);
    assert_eq!(merged.len(), 5);
}

#[test]
fn an_edit_and_new_shots_on_the_other_side_both_survive() {
    let mut rng = Rng(2);
    let ancestor = random_table(2, 3, 8);
    let (mut host, mut device) = (ancestor.clone(), ancestor.clone());
    host.rename("species 1", Name::new("Cep").unwrap()).unwrap();
    host.set_edibility("Cep", Edibility::Edible).unwrap();
    device.add_shots("species 1", &shots(&mut rng, 2, 8), Origin::Device(3)).unwrap();
    let merged = merge(&device, &host).unwrap();
    let cep = merged.get("cep").expect("the host's rename wins: the device did not rename");
    assert_eq!((cep.edibility, cep.prototype.shots), (Edibility::Edible, 5));
    assert!(merged.get("species 1").is_none());
}

#[test]
fn removals_sync_unless_the_other_side_changed_the_species_since() {
    let mut rng = Rng(3);
    let ancestor = random_table(3, 4, 8);
    let (mut host, mut device) = (ancestor.clone(), ancestor.clone());
    host.remove("species 0").unwrap();
    host.remove("species 1").unwrap();
    device.add_shots("species 1", &shots(&mut rng, 1, 8), Origin::Device(1)).unwrap();
    let merged = merge(&host, &device).unwrap();
    assert!(merged.get("species 0").is_none(), "removed on the host, untouched on the device");
    assert_eq!(merged.get("species 1").unwrap().prototype.shots, 4, "the device's new photo outlives the removal");
    assert_eq!(merged.tombstones().len(), 2);
    // The removal keeps reaching copies that are older than it.
    let again = merge(&ancestor, &merged).unwrap();
    assert!(again.get("species 0").is_none());
}

/// Found by the end-to-end chain: a species removed and enrolled again under its old name took
/// its old id, so the removal's tombstone covered the new enrollment and a merge dropped it.
#[test]
fn a_species_enrolled_again_after_its_removal_survives_the_merge() {
    let mut rng = Rng(4);
    let ancestor = random_table(4, 3, 8);
    let mut device = ancestor.clone();
    let old_id = device.get("species 1").unwrap().id;
    device.remove("species 1").unwrap();
    device.add_species(species("species 1", Edibility::Inedible), &shots(&mut rng, 3, 8)).unwrap();
    assert_ne!(device.get("species 1").unwrap().id, old_id, "a removed species' id is not given out again");
    for merged in [merge(&ancestor, &device).unwrap(), merge(&device, &ancestor).unwrap()] {
        let entry = merged.get("species 1").expect("the new enrollment is kept");
        assert_eq!((entry.prototype.shots, entry.edibility), (3, Edibility::Inedible));
        assert_eq!(merged.len(), 3);
    }
}

#[test]
fn one_species_enrolled_on_both_sides_becomes_one_entry_with_all_shots() {
    let mut rng = Rng(4);
    let ancestor = random_table(4, 2, 8);
    let (mut host, mut device) = (ancestor.clone(), ancestor.clone());
    let mut new = species("Saffron milkcap", Edibility::Edible);
    host.add_species(new.clone(), &shots(&mut rng, 3, 8)).unwrap();
    new.name = Name::new("saffron milkcap").unwrap();
    new.origin = Origin::Device(9);
    device.add_species(new, &shots(&mut rng, 2, 8)).unwrap();
    let host_id = host.get("saffron milkcap").unwrap().id;
    let device_id = device.get("saffron milkcap").unwrap().id;
    assert_ne!(host_id, device_id);

    let merged = merge(&host, &device).unwrap();
    assert_eq!(merged.len(), 3);
    let entry = merged.get("saffron milkcap").unwrap();
    assert_eq!(entry.id, host_id.min(device_id));
    assert_eq!(shots_by(&merged, "saffron milkcap"), [(Origin::Host, 3), (Origin::Device(9), 2)]);
    assert!(merged.tombstones().iter().any(|t| t.id == host_id.max(device_id)));
    // Either side's old copy merged into the result changes nothing.
    assert_eq!(merge(&merged, &device).unwrap(), merged);
    assert_eq!(merge(&host, &merged).unwrap(), merged);
}

#[test]
fn tables_of_different_models_are_refused() {
    let ours = random_table(5, 2, 8);
    let mut other_header = header(8);
    other_header.model_fingerprint = ModelFingerprint::of_bytes(b"another model");
    let theirs = Table::new(other_header);
    let err = merge(&ours, &theirs).unwrap_err();
    assert!(matches!(err, MergeError::DifferentModel { .. }));
    assert!(err.to_string().contains("different models"), "{err}");
}

/// One edit a side can make while the two are apart.
#[derive(Clone, Debug)]
enum Edit {
    Enroll { name: u8, shots: u8 },
    AddShots { species: u8, shots: u8 },
    Rename { species: u8, to: u8 },
    SetEdibility { species: u8, edibility: u8 },
    Remove { species: u8 },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..12, 1u8..4).prop_map(|(name, shots)| Edit::Enroll { name, shots }),
        (any::<u8>(), 1u8..4).prop_map(|(species, shots)| Edit::AddShots { species, shots }),
        (any::<u8>(), 0u8..12).prop_map(|(species, to)| Edit::Rename { species, to }),
        (any::<u8>(), 0u8..5).prop_map(|(species, edibility)| Edit::SetEdibility { species, edibility }),
        any::<u8>().prop_map(|species| Edit::Remove { species }),
    ]
}

/// Applies `edits` as a side at `origin` would; edits the table refuses (a duplicate name,
/// say) are skipped, as a person would retry with another.
fn apply(table: &mut Table, edits: &[Edit], origin: Origin, rng: &mut Rng) {
    let name = |n: u8| Name::new(&format!("fungus {n}")).unwrap();
    for edit in edits {
        let pick = |table: &Table, i: u8| {
            (!table.is_empty()).then(|| table.entries()[i as usize % table.len()].name.to_string())
        };
        match *edit {
            Edit::Enroll { name: n, shots: k } => {
                let mut new = species(name(n).as_str(), Edibility::Unknown);
                new.origin = origin;
                let _ = table.add_species(new, &shots(rng, k as usize, 8));
            }
            Edit::AddShots { species, shots: k } => {
                if let Some(s) = pick(table, species) {
                    table.add_shots(&s, &shots(rng, k as usize, 8), origin).unwrap();
                }
            }
            Edit::Rename { species, to } => {
                if let Some(s) = pick(table, species) {
                    let _ = table.rename(&s, name(to));
                }
            }
            Edit::SetEdibility { species, edibility } => {
                if let Some(s) = pick(table, species) {
                    table.set_edibility(&s, Edibility::ALL[edibility as usize]).unwrap();
                }
            }
            Edit::Remove { species } => {
                if let Some(s) = pick(table, species) {
                    table.remove(&s).unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/merge.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Two sides start from one table, edit apart, then merge: the result is the same whichever
    /// side merges, merging it again with either side or itself changes nothing, and every shot
    /// taken survives unless its species was removed.
    #[test]
    fn merge_is_commutative_idempotent_and_loses_no_shots(
        seed in any::<u64>(),
        ancestor_size in 0usize..6,
        host_edits in prop::collection::vec(edit(), 0..8),
        device_edits in prop::collection::vec(edit(), 0..8),
    ) {
        let mut rng = Rng(seed);
        let ancestor = random_table(seed, ancestor_size, 8);
        let (mut host, mut device) = (ancestor.clone(), ancestor.clone());
        apply(&mut host, &host_edits, Origin::Host, &mut rng);
        apply(&mut device, &device_edits, Origin::Device(5), &mut rng);

        let merged = merge(&host, &device).unwrap();
        prop_assert_eq!(&merge(&device, &host).unwrap(), &merged, "commutative");
        prop_assert_eq!(&merge(&merged, &merged).unwrap(), &merged, "idempotent");
        prop_assert_eq!(&merge(&merged, &host).unwrap(), &merged, "absorbs the host");
        prop_assert_eq!(&merge(&device, &merged).unwrap(), &merged, "absorbs the device");
        merged.validate().unwrap();

        // Every shot of a surviving species is in the merge: in the entry of the same id, or,
        // when its name met another id's (concurrent enrollments or renames), in the entry it
        // was folded into. A species is gone only when a removal covers it.
        let holds = |kept: &sporeprint_shared::Entry, entry: &sporeprint_shared::Entry| {
            entry.sources.iter().all(|source| {
                let shots = kept.sources.iter().find(|s| s.origin == source.origin).map_or(0, |s| s.prototype.shots);
                shots >= source.prototype.shots
            })
        };
        for side in [&host, &device] {
            for entry in side.entries() {
                match merged.get_by_id(entry.id) {
                    Some(kept) => prop_assert!(holds(kept, entry), "{} lost shots", entry.name),
                    None => {
                        let buried = merged.tombstones().iter().any(|t| t.covers(entry));
                        prop_assert!(buried, "{} vanished without a removal", entry.name);
                        let removed = [&host, &device].iter().any(|t| t.tombstones().iter().any(|t| t.covers(entry)));
                        let folded = merged.entries().iter().any(|kept| holds(kept, entry));
                        prop_assert!(removed || folded, "{} was neither removed nor folded into another entry", entry.name);
                    }
                }
            }
        }
    }
}
