//! Nearest-prototype search at table sizes from a club's (200) to the most a table holds
//! ([`MAX_SPECIES`], 10 000: a national flora's mushrooms).

use crate::timing::{Spread, measure};
use serde::Serialize;
use sporeprint_shared::table::{MAX_SPECIES, NewSpecies};
use sporeprint_shared::{Edibility, Header, ModelFingerprint, Name, Origin, PreprocessSpec, Table, vector};

#[derive(Clone, Debug, Serialize)]
pub struct SearchTime {
    pub species: usize,
    pub dim: usize,
    /// `Table::identify(query, 3)`: the device's search, with the open-set decision.
    pub latency: Spread,
}

fn unit(seed: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|i| (((seed * 7919 + i * 104_729) % 1000) as f32 / 500.0) - 1.0).collect();
    vector::l2_normalize(&mut v);
    v
}

/// A table of `species` random unit prototypes of `dim` dimensions.
pub fn table(species: usize, dim: usize) -> Table {
    let header = Header::new(dim as u32, ModelFingerprint::of_bytes(b"bench"), PreprocessSpec::EFFICIENTNET_LITE);
    let mut table = Table::new(header);
    for i in 0..species {
        let new = NewSpecies {
            name: Name::new(&format!("species {i}")).expect("short ASCII name"),
            scientific_name: None,
            genus: None,
            edibility: Edibility::ALL[i % Edibility::ALL.len()],
            origin: Origin::Host,
        };
        table.add_species(new, &[unit(i, dim)]).expect("distinct names, one dimension");
    }
    table
}

/// Refuses a table size no table can have, before any benchmark runs.
pub fn check_sizes(sizes: &[usize]) -> anyhow::Result<()> {
    for &species in sizes {
        anyhow::ensure!(
            (1..=MAX_SPECIES).contains(&species),
            "--species {species}: a table holds 1 to {MAX_SPECIES} species"
        );
    }
    Ok(())
}

pub fn search_time(species: usize, dim: usize, runs: usize) -> anyhow::Result<SearchTime> {
    let table = table(species, dim);
    let query = unit(species + 1, dim);
    let latency = measure(3, runs, || table.identify(std::hint::black_box(&query), 3).map(drop))?;
    Ok(SearchTime { species, dim, latency })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_default_sizes_are_tables_that_can_exist_and_bigger_ones_are_refused() {
        let defaults = crate::cli::Cli::parse_from(["sporeprint-bench"]).species;
        check_sizes(&defaults).unwrap();
        let largest = *defaults.iter().max().unwrap();
        assert_eq!((largest, table(largest, 4).len()), (MAX_SPECIES, MAX_SPECIES));
        let refused = check_sizes(&[200, MAX_SPECIES + 1]).unwrap_err().to_string();
        assert!(refused.contains("--species 10001"), "{refused}");
        assert!(check_sizes(&[0]).is_err());
    }
}
