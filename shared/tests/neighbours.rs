//! Neighbours of a prototype and the crowding distance, on tables whose geometry is known.

mod common;

use common::{header, species};
use sporeprint_shared::{Edibility, Table};

/// Species on a circle, `step` radians apart: every nearest-neighbour distance is
/// `2 sin(step / 2)`.
fn circle(count: usize, step: f32) -> Table {
    let mut table = Table::new(header(2));
    for i in 0..count {
        let angle = i as f32 * step;
        table.add_species(species(&format!("s{i}"), Edibility::Unknown), &[[angle.cos(), angle.sin()]]).unwrap();
    }
    table
}

#[test]
fn neighbours_are_sorted_and_skip_the_species_itself() {
    let table = circle(5, 0.1);
    let found = table.neighbours(&[1.0, 0.0], Some(0), 3);
    assert_eq!(found.iter().map(|n| n.index).collect::<Vec<_>>(), [1, 2, 3]);
    assert!((found[0].distance - 2.0 * 0.05f32.sin()).abs() < 1e-5);
    assert_eq!(table.neighbours(&[1.0, 0.0], None, 1)[0].index, 0);
    assert_eq!(table.neighbours(&[1.0, 0.0], None, 10).len(), 5);
}

#[test]
fn a_species_closer_than_the_table_is_usual_stands_out() {
    let mut table = circle(20, 0.1);
    let usual = 2.0 * 0.05f32.sin();
    assert!((table.crowding_distance(None) - usual).abs() < 1e-5);
    // A new species 0.02 rad from s0: closer than any species is to its nearest neighbour.
    table.add_species(species("twin", Edibility::Unknown), &[[0.02f32.cos(), 0.02f32.sin()]]).unwrap();
    let twin = table.position("twin").unwrap();
    let crowding = table.crowding_distance(Some(twin));
    assert!((crowding - usual).abs() < 1e-5, "the new species does not vote on its own test");
    let nearest = table.neighbours(&table.entries()[twin].prototype.vector.clone(), Some(twin), 1)[0];
    assert_eq!(table.entries()[nearest.index].name.as_str(), "s0");
    assert!(nearest.distance < crowding);
    // One 0.1 rad past the end of the circle is as far as the others are: not flagged.
    let angle = 20.0f32 * 0.1;
    table.add_species(species("new", Edibility::Unknown), &[[angle.cos(), angle.sin()]]).unwrap();
    let new = table.position("new").unwrap();
    let nearest = table.neighbours(&[angle.cos(), angle.sin()], Some(new), 1)[0];
    assert!(nearest.distance >= table.crowding_distance(Some(new)) - 1e-6);
}

#[test]
fn a_small_table_falls_back_to_half_the_threshold() {
    let mut table = circle(3, 0.5);
    table.set_open_set_threshold(0.6);
    assert_eq!(table.crowding_distance(None), 0.3);
}
