//! The photos: the collection on disk and its split (`data`), decoding and batching them for
//! the network (`pipeline`), and their shifted variants for evaluation (`shift`).

pub mod data;
pub mod pipeline;
pub mod shift;
