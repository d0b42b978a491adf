//! Generated photos: each species a colour and stripe pattern (what the tiny backbone can tell
//! apart), each photo of it with its own shift and noise. Also used by the end-to-end tests in
//! `tests/` (included by path), so both train on the same kind of photo.

use image::{Rgb, RgbImage};

/// Photo `variant` of species `species`, 96x96.
pub fn striped(species: usize, variant: usize) -> RgbImage {
    let base = [(species * 53 % 256) as u8, (species * 97 % 256) as u8, (species * 151 % 256) as u8];
    let (s, p) = (species as u32, variant as u32);
    RgbImage::from_fn(96, 96, |x, y| {
        let stripe = ((x + y * (s % 3) + p * 7) / (4 + s % 5)) % 2;
        let noise = ((x * 31 + y * 17 + p * 13) % 23) as u8;
        Rgb(base.map(|c| if stripe == 0 { c.saturating_add(noise) } else { c / 3 + noise }))
    })
}
