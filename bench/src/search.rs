//! Nearest-prototype search at table sizes from a club's (200) to a national flora's (100 000).

use crate::timing::{Spread, measure};
use serde::Serialize;
use sporeprint_shared::table::NewSpecies;
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

pub fn search_time(species: usize, dim: usize, runs: usize) -> anyhow::Result<SearchTime> {
    let table = table(species, dim);
    let query = unit(species + 1, dim);
    let latency = measure(3, runs, || table.identify(std::hint::black_box(&query), 3).map(drop))?;
    Ok(SearchTime { species, dim, latency })
}
