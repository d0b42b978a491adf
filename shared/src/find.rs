//! A find: several views of one mushroom (cap, gills, stem...) identified together.
//!
//! The views are combined into one query before the table is asked, so a find goes through
//! exactly the classification, open-set rule, genus and look-alike search of a single photo
//! ([`crate::table::Table::identify_with`]):
//! - the embedding is the mean of the views' unit embeddings (normalised again by the table).
//!   For unit vectors `|q - p|^2 = 2 - 2 q.p`, so this ranks species by the sum of the views'
//!   squared distances: every view counts, one odd view cannot outvote the others alone;
//! - the atypicality is the mean of the views' atypicalities, on the same scale as one photo's,
//!   so the open-set threshold calibrated on single photos applies unchanged.

use crate::table::TableError;
use crate::vector;
use alloc::vec::Vec;

/// One view's embedding and atypicality (see `crate::embedder::Observation`).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub embedding: &'a [f32],
    pub atypicality: f32,
}

/// The query a find's views make together: (unit embedding, atypicality).
///
/// Refuses no views, views of different dimensions and any view that is not finite, as
/// [`crate::table::Table::identify_with`] refuses one photo's.
pub fn combine(views: &[View<'_>]) -> Result<(Vec<f32>, f32), TableError> {
    let Some(first) = views.first() else {
        return Err(TableError::EmptyFind);
    };
    let dim = first.embedding.len();
    let mut sum = alloc::vec![0.0f32; dim];
    let mut atypicality = 0.0f32;
    for view in views {
        if view.embedding.len() != dim {
            return Err(TableError::DimensionMismatch { expected: dim, found: view.embedding.len() });
        }
        if !view.atypicality.is_finite() {
            return Err(TableError::NotFinite("a view's atypicality"));
        }
        let mut unit = view.embedding.to_vec();
        let length = vector::l2_normalize(&mut unit);
        if !(length > 0.0 && length.is_finite()) {
            return Err(TableError::NotFinite("a view's embedding"));
        }
        vector::accumulate(&mut sum, &unit);
        atypicality += view.atypicality;
    }
    let length = vector::l2_normalize(&mut sum);
    if !(length > 0.0 && length.is_finite()) {
        // Views pointing in exactly opposite directions: nothing to say about the find.
        return Err(TableError::NotFinite("the views' mean embedding (the views cancel out)"));
    }
    Ok((sum, atypicality / views.len() as f32))
}
