//! The verdict a forager sees, on a hand-made table: one decision for every kind of answer, a
//! deadly look-alike named before a nearer poisonous one, and numbers that are not numbers
//! refused rather than named.

mod common;

use common::{header, species};
use sporeprint_shared::table::TableError;
use sporeprint_shared::{Edibility, Table, Tone, Verdict};

/// Five species around the first axis of a 3-d space, and one far away on the third.
fn table() -> Table {
    let mut table = Table::new(header(3));
    table.set_open_set_threshold(0.5);
    table.set_lookalike_margin(0.3);
    let at = |angle: f32| vec![angle.cos(), angle.sin(), 0.0];
    for (name, edibility, shot) in [
        ("field mushroom", Edibility::Edible, at(0.0)),
        ("yellow stainer", Edibility::Poisonous, at(0.1)),
        ("destroying angel", Edibility::Deadly, at(0.2)),
        ("bitter bolete", Edibility::Inedible, at(1.2)),
        ("field species 1", Edibility::Unknown, at(1.6)),
        ("death cap", Edibility::Deadly, vec![0.0, 0.0, 1.0]),
    ] {
        table.add_species(species(name, edibility), &[shot]).unwrap();
    }
    table
}

fn verdict(table: &Table, query: &[f32], atypicality: f32) -> Verdict {
    Verdict::of(&table.identify_with(query, atypicality, 3).unwrap(), table)
}

#[test]
fn each_kind_of_answer_gets_its_verdict() {
    let t = table();
    let index = |name: &str| t.position(name).unwrap();
    let at = |angle: f32| [angle.cos(), angle.sin(), 0.0];

    // Edible, with a deadly species 0.2 rad behind and a poisonous one nearer: the deadly one is named.
    let v = verdict(&t, &at(-0.05), 0.0);
    assert_eq!(
        v,
        Verdict::DangerousLookalike { species: index("field mushroom"), lookalike: index("destroying angel") }
    );
    assert_eq!((v.tone(), v.headline(), v.do_not_eat()), (Tone::Danger, "DANGEROUS LOOK-ALIKE", true));
    assert!(v.warning(&t).contains("destroying angel (deadly poisonous)"), "{}", v.warning(&t));

    let v = verdict(&t, &[0.0, 0.05, 1.0], 0.0);
    assert_eq!(v, Verdict::Dangerous { species: index("death cap"), edibility: Edibility::Deadly });
    assert_eq!((v.tone(), v.headline()), (Tone::Danger, "DEADLY POISONOUS"));
    assert_eq!(v.warning(&t), "death cap is deadly poisonous. Do not eat.");

    let v = verdict(&t, &at(1.2), 0.0);
    assert_eq!(
        (v, v.tone(), v.do_not_eat()),
        (Verdict::Inedible { species: index("bitter bolete") }, Tone::Neutral, true)
    );

    // Enrolled in the field without an edibility: "do not eat", in amber.
    let v = verdict(&t, &at(1.6), 0.0);
    assert_eq!(v, Verdict::EdibilityUnknown { species: index("field species 1") });
    assert_eq!((v.tone(), v.headline(), v.do_not_eat()), (Tone::Caution, "EDIBILITY UNKNOWN", true));
    assert!(v.warning(&t).ends_with("Do not eat."));

    // Beyond the threshold by distance, and by atypicality only.
    let v = verdict(&t, &[-1.0, 0.0, 0.0], 0.0);
    assert_eq!((v, v.species(), v.tone()), (Verdict::UnknownSpecies, None, Tone::Caution));
    let v = verdict(&t, &at(1.6), 0.6);
    assert_eq!((v, v.headline()), (Verdict::UnknownAtypical, "UNKNOWN - DO NOT EAT"));
}

#[test]
fn only_an_edible_answer_without_a_dangerous_lookalike_is_not_do_not_eat() {
    let mut t = table();
    t.set_lookalike_margin(0.05);
    let v = verdict(&t, &[1.0, -0.1, 0.0], 0.0);
    assert_eq!(v, Verdict::Edible { species: 0 });
    assert_eq!((v.tone(), v.do_not_eat()), (Tone::Edible, false));
    assert!(v.warning(&t).contains("ask an expert"), "{}", v.warning(&t));
}

#[test]
fn numbers_that_are_not_numbers_are_refused_not_named() {
    let t = table();
    for query in [[f32::NAN, 0.0, 0.0], [f32::INFINITY, 0.0, 0.0], [0.0, 0.0, 0.0]] {
        assert!(matches!(t.identify(&query, 3), Err(TableError::NotFinite("the embedding"))), "{query:?}");
    }
    for atypicality in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let found = t.identify_with(&[1.0, 0.0, 0.0], atypicality, 3);
        assert!(matches!(found, Err(TableError::NotFinite("the photo's atypicality"))), "{atypicality}");
    }
}
