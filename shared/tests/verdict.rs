//! The verdict a forager sees, on hand-made tables: one decision for every kind of answer, a
//! deadly look-alike named before a nearer poisonous one or when it is probable enough, a genus
//! when no species is likely but the genus is, calibrated bands in words, and numbers that are
//! not numbers refused rather than named.

mod common;

use common::{header, species};
use sporeprint_shared::confidence::shown_percent;
use sporeprint_shared::table::TableError;
use sporeprint_shared::{Band, Edibility, LOOKALIKE_FLOOR, Name, Table, Tone, Verdict};

/// Five species around the first axis of a 3-d space, and one far away on the third.
fn table() -> Table {
    let mut table = Table::new(header(3));
    table.set_open_set_threshold(0.5);
    table.set_lookalike_margin(0.3);
    // Sharp enough that an answer on a prototype is "likely".
    table.set_temperature(0.02);
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

/// Species in the xy-plane at the given angles, with their genus.
fn plane(species_at: &[(&str, Option<&str>, Edibility, f32)], temperature: f32) -> Table {
    let mut table = Table::new(header(3));
    table.set_open_set_threshold(0.5);
    table.set_lookalike_margin(0.01);
    table.set_temperature(temperature);
    for &(name, genus, edibility, angle) in species_at {
        let mut new = species(name, edibility);
        new.genus = genus.map(|g| Name::new(g).unwrap());
        table.add_species(new, &[vec![angle.cos(), angle.sin(), 0.0]]).unwrap();
    }
    table
}

fn at(angle: f32) -> [f32; 3] {
    [angle.cos(), angle.sin(), 0.0]
}

#[test]
fn a_likely_genus_is_the_answer_when_no_species_is_likely() {
    let amanitas = |first: Edibility| {
        plane(
            &[
                ("death cap", Some("Amanita"), first, 1.0),
                ("blusher", Some("Amanita"), Edibility::Edible, 1.1),
                ("tawny grisette", Some("Amanita"), Edibility::Edible, 1.2),
                ("field mushroom", Some("Agaricus"), Edibility::Edible, -1.0),
            ],
            0.1,
        )
    };
    let t = amanitas(Edibility::Deadly);
    let found = t.identify_with(&at(1.05), 0.0, 4).unwrap();
    let best = found.top[0];
    assert_eq!(Band::of(best.confidence), Band::Possible, "{}", best.confidence);
    let genus = found.genus.unwrap();
    // The genus' probability is its species' confidences summed.
    let by_hand: f32 = found.top.iter().filter(|m| m.index < 3).map(|m| m.confidence).sum();
    assert!((genus.probability - by_hand).abs() < 1e-5, "{} vs {by_hand}", genus.probability);
    assert_eq!((genus.species, genus.most_dangerous), (3, Edibility::Deadly));
    assert!(genus.member < 2, "the most probable species names it");

    let v = Verdict::of(&found, &t);
    assert_eq!(v, Verdict::Genus { member: genus.member, edibility: Edibility::Deadly });
    assert_eq!((v.species(), v.genus_member(), v.kind()), (None, Some(genus.member), "genus"));
    assert_eq!((v.tone(), v.headline(), v.do_not_eat()), (Tone::Danger, "GENUS HAS DEADLY SPECIES", true));
    assert_eq!(
        v.warning(&t),
        "species unclear, probably the genus Amanita: this genus has deadly poisonous species. Do not eat."
    );

    // A genus of edible species only is still "do not eat": which one it is, is not known.
    let t = amanitas(Edibility::Edible);
    let v = Verdict::of(&t.identify_with(&at(1.05), 0.0, 4).unwrap(), &t);
    assert!(matches!(v, Verdict::Genus { edibility: Edibility::Edible, .. }), "{v:?}");
    assert_eq!((v.tone(), v.headline(), v.do_not_eat()), (Tone::Caution, "SPECIES UNCLEAR", true));

    // On a species' own prototype it is likely: the species is named, not its genus.
    let t = amanitas(Edibility::Deadly);
    let sharp = {
        let mut t = t.clone();
        t.set_temperature(0.02);
        t
    };
    let v = Verdict::of(&sharp.identify_with(&at(1.0), 0.0, 4).unwrap(), &sharp);
    assert_eq!(v, Verdict::Dangerous { species: 0, edibility: Edibility::Deadly });
}

#[test]
fn a_probable_dangerous_species_is_named_however_far_behind() {
    let species =
        [("field mushroom", None, Edibility::Edible, 0.0), ("yellow stainer", None, Edibility::Poisonous, 0.5)];
    // Sharp: the stainer, 0.49 away (far beyond the 0.01 margin), is under 1%: not named.
    let t = plane(&species, 0.1);
    let found = t.identify_with(&at(0.0), 0.0, 2).unwrap();
    assert!(found.top[1].confidence < LOOKALIKE_FLOOR, "{}", found.top[1].confidence);
    assert_eq!(Verdict::of(&found, &t), Verdict::Edible { species: 0 });
    // Softer: at the same distance it is above the 5% floor, and named.
    let t = plane(&species, 0.3);
    let found = t.identify_with(&at(0.0), 0.0, 2).unwrap();
    assert!(found.top[1].confidence >= LOOKALIKE_FLOOR, "{}", found.top[1].confidence);
    assert_eq!(Band::of(found.top[0].confidence), Band::Likely);
    assert_eq!(Verdict::of(&found, &t), Verdict::DangerousLookalike { species: 0, lookalike: 1 });
}

#[test]
fn an_edible_answer_that_is_not_likely_is_do_not_eat() {
    let t = plane(
        &[
            ("field mushroom", None, Edibility::Edible, 0.0),
            ("horse mushroom", None, Edibility::Edible, 0.12),
            ("bitter bolete", None, Edibility::Inedible, -0.12),
        ],
        0.1,
    );
    let found = t.identify_with(&at(0.03), 0.0, 3).unwrap();
    let v = Verdict::of(&found, &t);
    assert_eq!(v, Verdict::EdibleUnsure { species: 0, band: Band::Possible });
    assert_eq!((v.tone(), v.headline(), v.do_not_eat()), (Tone::Caution, "NOT SURE - DO NOT EAT", true));
    assert_eq!(
        v.warning(&t),
        "field mushroom is edible, but this answer is only possible (under 60%): not sure enough to eat. Do not eat."
    );
}

#[test]
fn confidences_are_told_in_bands_and_never_as_certain() {
    let cases = [(0.99, Band::Likely), (0.6, Band::Likely), (0.599, Band::Possible), (0.25, Band::Possible)];
    for (p, band) in cases.into_iter().chain([(0.249, Band::Guess), (0.0, Band::Guess), (f32::NAN, Band::Guess)]) {
        assert_eq!(Band::of(p), band, "{p}");
    }
    assert_eq!(Band::of(1.5), Band::Guess, "not a probability");
    assert_eq!([Band::Likely.words(), Band::Possible.words(), Band::Guess.words()], ["likely", "possible", "a guess"]);
    assert_eq!(
        [shown_percent(1.0), shown_percent(0.996), shown_percent(0.5), shown_percent(f32::NAN)],
        [99, 99, 50, 0]
    );
}
