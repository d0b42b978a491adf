//! What a confidence means to a forager: a calibrated probability put into words.
//!
//! The table's temperature is fitted at export so that, on held-out photos, an answer given
//! probability p is right about p of the time. A number with two digits suggests more precision
//! than a few hundred calibration photos give, so the device says it in bands, and never says
//! "100%": no photo identification is certain. `--json` keeps the number.
//!
//! The bands, on calibrated probabilities:
//! - **likely**, p >= 0.6: right more often than wrong by at least 3 to 2;
//! - **possible**, 0.25 <= p < 0.6: a real candidate, wrong about half the time or more;
//! - **a guess**, p < 0.25: wrong at least three times in four.

use serde::Serialize;

/// Where a calibrated probability falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Guess,
    Possible,
    Likely,
}

impl Band {
    /// Lowest probability called "likely".
    pub const LIKELY: f32 = 0.6;
    /// Lowest probability called "possible".
    pub const POSSIBLE: f32 = 0.25;

    /// The band of probability `p`; anything that is not a number in [0, 1] is "a guess".
    pub fn of(p: f32) -> Band {
        if (Band::LIKELY..=1.0).contains(&p) {
            Band::Likely
        } else if (Band::POSSIBLE..=1.0).contains(&p) {
            Band::Possible
        } else {
            Band::Guess
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Band::Likely => "likely",
            Band::Possible => "possible",
            Band::Guess => "a guess",
        }
    }
}

/// A probability as the percentage shown next to a name: rounded, at most 99, never 100.
pub fn shown_percent(p: f32) -> u8 {
    if p.is_nan() {
        return 0;
    }
    libm::roundf(100.0 * p.clamp(0.0, 0.99)) as u8
}
