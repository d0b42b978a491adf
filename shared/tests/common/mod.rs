//! Tables and embeddings for tests, generated from a seed.
#![allow(dead_code)]

use sporeprint_shared::table::NewSpecies;
use sporeprint_shared::{Edibility, ModelFingerprint, Name, Origin, PreprocessSpec, Table};
use sporeprint_shared::{Header, vector};

/// A small deterministic generator (splitmix64), so tests need no RNG state from elsewhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| self.next_f32()).collect();
        vector::l2_normalize(&mut v);
        v
    }

    /// `center` moved by noise of size `noise`, renormalised.
    pub fn near(&mut self, center: &[f32], noise: f32) -> Vec<f32> {
        let mut v: Vec<f32> = center.iter().map(|c| c + noise * self.next_f32()).collect();
        vector::l2_normalize(&mut v);
        v
    }
}

pub fn header(dim: u32) -> Header {
    Header::new(dim, ModelFingerprint::of_bytes(b"test model"), PreprocessSpec::EFFICIENTNET_LITE)
}

pub fn species(name: &str, edibility: Edibility) -> NewSpecies {
    NewSpecies { name: Name::new(name).unwrap(), scientific_name: None, genus: None, edibility, origin: Origin::Host }
}

/// A table of `count` species in `dim` dimensions, each from 3 noisy shots around a random centre.
pub fn random_table(seed: u64, count: usize, dim: u32) -> Table {
    let mut rng = Rng(seed);
    let mut table = Table::new(header(dim));
    for i in 0..count {
        let center = rng.unit_vector(dim as usize);
        let shots: Vec<Vec<f32>> = (0..3).map(|_| rng.near(&center, 0.2)).collect();
        let edibility = Edibility::ALL[i % Edibility::ALL.len()];
        let mut new = species(&format!("species {i}"), edibility);
        if i % 2 == 0 {
            new.scientific_name = Some(Name::new(&format!("Fungus number{i}")).unwrap());
        }
        table.add_species(new, &shots).unwrap();
    }
    table
}
