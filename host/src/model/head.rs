//! The embedding heads: backbone features -> unit-length embedding.
//!
//! - [`HeadKind::Study`]: the study's three linear layers (features -> 512 -> 256 -> D) with ReLU
//!   between them. Randomly initialised, it starts far worse than the features it is given: on
//!   the real photos it never caught up with them (see the README's results).
//! - [`HeadKind::Residual`]: the same three layers added to a linear projection of the
//!   mean-centred features, `P (f - c) + mlp(f - c)`. `c` is the training features' mean and `P`
//!   their half-whitened principal directions or, with [`Projection::Lda`], their discriminant
//!   directions (computed by [`Head::initialise`]), and the MLP's last layer starts at zero, so
//!   training starts from that projection of the centred features — measured as good as or
//!   better than the raw features — and the MLP only has to learn corrections.

use crate::export::onnx::{Attribute, Graph};
use crate::model::atypicality::Atypicality;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

pub const HIDDEN: [i64; 2] = [512, 256];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// The study's 3-layer MLP.
    Study,
    /// Centring + a linear projection (half-whitened PCA or LDA), plus the 3-layer MLP as a residual.
    #[default]
    Residual,
}

/// Where the residual head's projection `P` starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Projection {
    /// The features' top principal directions, half-whitened.
    #[default]
    Pca,
    /// Regularised linear discriminant analysis: the directions along which species differ most
    /// relative to how photos of one species vary. What varies within a species (light, angle,
    /// background) varies the same way for species never seen, so it carries over to them.
    Lda,
}

#[derive(Debug)]
pub struct Head {
    pub kind: HeadKind,
    layers: [nn::Linear; 3],
    /// Residual head only: the centre `c` (not trained) and the projection `P` `[D, F]`.
    centre: Option<Tensor>,
    projection: Option<Tensor>,
    /// Residual head with `--constant-coordinate R`: the embedding's last coordinate is R before
    /// normalising (the other D - 1 are the projection's), see [`Head::new`].
    constant_coordinate: Option<f64>,
    /// Exported as the model's second output when set (see [`crate::model::atypicality`]): fitted by
    /// `sporeprint export` on the trained network, never trained.
    atypicality: Option<Atypicality>,
}

impl Head {
    /// `constant_coordinate` (residual head only, else ignored): a constant last coordinate
    /// appended before normalising. The projection is fitted on the training photos and sends
    /// them farther from the centre than any other photo (mean length 1 against 0.87 for new
    /// photos of the same species); on the unit sphere that makes prototypes of training photos
    /// (the shipped table's) sharper than those of new photos (species enrolled on a device).
    /// The constant coordinate keeps the length's trace, so a new photo is nearer prototypes
    /// made of photos like it (3-shot top-1 30.1 -> 34.3 over five splits at 0.25; prototype
    /// top-1 over known and enrolled photos together unchanged).
    pub fn new(p: &nn::Path, kind: HeadKind, features: i64, dim: i64, constant_coordinate: f64) -> Head {
        let residual = kind == HeadKind::Residual;
        let constant_coordinate = (residual && constant_coordinate > 0.0).then_some(constant_coordinate);
        let dim = if constant_coordinate.is_some() { dim - 1 } else { dim };
        let last = if residual {
            nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true }
        } else {
            Default::default()
        };
        Head {
            kind,
            layers: [
                nn::linear(p / "fc1", features, HIDDEN[0], Default::default()),
                nn::linear(p / "fc2", HIDDEN[0], HIDDEN[1], Default::default()),
                nn::linear(p / "fc3", HIDDEN[1], dim, last),
            ],
            centre: residual.then(|| p.zeros_no_train("centre", &[features])),
            projection: residual.then(|| p.var("projection", &[dim, features], nn::Init::Const(0.0))),
            constant_coordinate,
            atypicality: None,
        }
    }

    /// Sets the residual head's centre and projection from backbone features of the training
    /// photos `[N, F]`: `c` = their mean, `P` = the top D principal directions scaled by
    /// `1/sqrt(singular value)` (half-whitening, the best of 0, 1/2 and 1 in our measurements),
    /// and the whole scaled so training features project to unit length on average. Directions
    /// beyond the rank of `features` stay zero. A study head is left as it is.
    ///
    /// With [`Projection::Lda`], `P` is instead the top D discriminant directions of the photos'
    /// species (`labels`, one per row), the within-species scatter shrunk towards its mean
    /// variance by `shrinkage` (0: plain LDA, which 3 photos per species make unstable).
    pub fn initialise(&mut self, features: &Tensor, labels: &[usize], start: Projection, shrinkage: f64) {
        let (Some(centre), Some(projection)) = (&mut self.centre, &mut self.projection) else { return };
        tch::no_grad(|| {
            let features = features.to_device(centre.device()).to_kind(Kind::Float);
            let mean = features.mean_dim([0i64].as_slice(), false, Kind::Float);
            let centred = &features - &mean;
            let dim = projection.size()[0];
            let mut p = match start {
                Projection::Pca => half_whitened_pca(&centred, dim),
                Projection::Lda => discriminant_directions(&centred, labels, dim, shrinkage),
            };
            let mean_norm = centred.matmul(&p.tr()).norm_scalaropt_dim(2, [1i64].as_slice(), false).mean(Kind::Float);
            p /= mean_norm.clamp_min(1e-12);
            centre.copy_(&mean);
            projection.copy_(&p);
        });
    }

    /// The raw (pre-normalisation) embedding.
    pub fn raw(&self, features: &Tensor) -> Tensor {
        let [fc1, fc2, fc3] = &self.layers;
        let mlp = |x: &Tensor| x.apply(fc1).relu().apply(fc2).relu().apply(fc3);
        let raw = match (&self.centre, &self.projection) {
            (Some(centre), Some(projection)) => {
                let centred = features - centre;
                centred.matmul(&projection.tr()) + mlp(&centred)
            }
            _ => mlp(features),
        };
        match self.constant_coordinate {
            Some(value) => {
                let constant = Tensor::full([raw.size()[0], 1], value, (raw.kind(), raw.device()));
                Tensor::cat(&[raw, constant], 1)
            }
            None => raw,
        }
    }
}

impl Head {
    pub fn atypicality(&self) -> Option<&Atypicality> {
        self.atypicality.as_ref()
    }

    pub fn set_atypicality(&mut self, atypicality: Option<Atypicality>) {
        self.atypicality = atypicality;
    }

    /// The ONNX of [`Atypicality::of`]: features `[1, F]` -> `[1, 1]`, if the head has one.
    pub fn export_atypicality(&self, g: &mut Graph, features: &str) -> Option<String> {
        let a = self.atypicality.as_ref()?;
        let unit = g.l2_normalize(features);
        let typical = g.constant_f32("typical", &a.typical, &[1, a.typical.len() as i64]);
        let offset = g.op("Sub", &[&unit, &typical], vec![]);
        let distance =
            g.op("ReduceL2", &[&offset], vec![("axes", Attribute::Ints(vec![1])), ("keepdims", Attribute::Int(1))]);
        let mean = g.constant_f32("atypicality_mean", &[a.mean], &[]);
        let scale = g.constant_f32("atypicality_scale", &[a.scale], &[]);
        let centred = g.op("Sub", &[&distance, &mean], vec![]);
        Some(g.op("Mul", &[&centred, &scale], vec![]))
    }

    /// The ONNX of [`Head::forward`]: features `[1, F]` -> unit embedding `[1, D]`.
    pub fn export(&self, g: &mut Graph, features: &str) -> String {
        let [fc1, fc2, fc3] = &self.layers;
        let input = match &self.centre {
            Some(centre) => {
                let centre = g.constant("centre", centre);
                g.op("Sub", &[features, &centre], vec![])
            }
            None => features.to_string(),
        };
        let hidden = g.linear(&input, fc1);
        let hidden = g.relu(&hidden);
        let hidden = g.linear(&hidden, fc2);
        let hidden = g.relu(&hidden);
        let mlp = g.linear(&hidden, fc3);
        let raw = match &self.projection {
            Some(projection) => {
                let projection = g.constant("projection", &projection.tr());
                let projected = g.op("MatMul", &[&input, &projection], vec![]);
                g.op("Add", &[&projected, &mlp], vec![])
            }
            None => mlp,
        };
        let raw = match self.constant_coordinate {
            Some(value) => {
                let constant = g.constant_f32("constant_coordinate", &[value as f32], &[1, 1]);
                g.op("Concat", &[&raw, &constant], vec![("axis", Attribute::Int(1))])
            }
            None => raw,
        };
        g.l2_normalize(&raw)
    }
}

impl Module for Head {
    fn forward(&self, features: &Tensor) -> Tensor {
        l2_normalize(&self.raw(features))
    }
}

/// `[D, F]`: the top principal directions of centred rows, scaled by `1/sqrt(singular value)`;
/// directions beyond the rank stay zero.
fn half_whitened_pca(centred: &Tensor, dim: i64) -> Tensor {
    // `svd` rather than `linalg_svd`: tch passes linalg_svd a driver, which CPUs refuse.
    let (_, singular, right) = centred.svd(true, true);
    let directions = right.tr();
    let rank = singular.size()[0].min(dim);
    let scale = singular.narrow(0, 0, rank).clamp_min(1e-6).sqrt().reciprocal().unsqueeze(1);
    let p = Tensor::zeros([dim, centred.size()[1]], (Kind::Float, centred.device()));
    p.narrow(0, 0, rank).copy_(&(directions.narrow(0, 0, rank) * scale));
    p
}

/// `[D, F]`: regularised LDA of centred rows. The within-species scatter `S_w + shrinkage *
/// mean variance * I` is whitened, and the top principal directions of the species means in that
/// whitened space are mapped back (computed in double precision).
fn discriminant_directions(centred: &Tensor, labels: &[usize], dim: i64, shrinkage: f64) -> Tensor {
    let x = centred.to_kind(Kind::Double);
    let (rows, width) = (x.size()[0], x.size()[1]);
    let groups = crate::eval::metrics::by_label(labels);
    let mut species_means = Vec::with_capacity(groups.len());
    let mut within = Vec::with_capacity(groups.len());
    for members in groups.values() {
        let index: Vec<i64> = members.iter().map(|&i| i as i64).collect();
        let members = x.index_select(0, &Tensor::from_slice(&index).to_device(x.device()));
        let species_mean = members.mean_dim([0i64].as_slice(), true, Kind::Double);
        within.push(&members - &species_mean);
        species_means.push(species_mean);
    }
    let within = Tensor::cat(&within, 0);
    let species_means = Tensor::cat(&species_means, 0);
    let scatter = within.tr().matmul(&within) / rows as f64;
    let variance = scatter.trace().double_value(&[]) / width as f64;
    let regularised = scatter + Tensor::eye(width, (Kind::Double, x.device())) * (shrinkage * variance).max(1e-12);
    let (values, vectors) = regularised.linalg_eigh("L");
    let whiten = vectors * values.clamp_min(1e-12).rsqrt().unsqueeze(0);
    let between = species_means.matmul(&whiten);
    let between = between.tr().matmul(&between) / species_means.size()[0] as f64;
    // eigh sorts ascending: the last columns are the most discriminant.
    let (_, directions) = between.linalg_eigh("L");
    let top = dim.min(width);
    let chosen = directions.narrow(1, width - top, top).flip([1i64]);
    let p = Tensor::zeros([dim, width], (Kind::Float, x.device()));
    p.narrow(0, 0, top).copy_(&whiten.matmul(&chosen).tr().to_kind(Kind::Float));
    p
}

/// Rows scaled to unit length (a zero row stays zero).
pub fn l2_normalize(xs: &Tensor) -> Tensor {
    let norm = xs.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    xs / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_residual_head_starts_as_centred_half_whitened_pca() {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut head = Head::new(&vs.root(), HeadKind::Residual, 8, 3, 0.0);
        // Features with very different spreads per axis, off-centre.
        let scales = Tensor::from_slice(&[9.0f32, 4.0, 1.0, 0.5, 0.1, 0.1, 0.1, 0.1]);
        let features = Tensor::randn([200, 8], (Kind::Float, tch::Device::Cpu)) * &scales + 5.0;
        head.initialise(&features, &[], Projection::Pca, 0.0);
        let raw = tch::no_grad(|| head.raw(&features));
        // The MLP starts at zero: the output is the projection alone, centred and uncorrelated.
        let mean = raw.mean_dim([0i64].as_slice(), false, Kind::Float);
        assert!(mean.abs().max().double_value(&[]) < 1e-4, "{mean}");
        let covariance = raw.tr().matmul(&raw) / 200.0;
        let off_diagonal = &covariance - covariance.diag(0).diag_embed(0, -2, -1);
        assert!(off_diagonal.abs().max().double_value(&[]) < 1e-4, "{covariance}");
        // Half-whitened: variances follow the singular values (9 : 4 : 1 here), not their squares.
        let variance: Vec<f64> = Vec::try_from(covariance.diag(0).to_kind(Kind::Double)).unwrap();
        assert!(variance[0] / variance[1] > 1.8 && variance[0] / variance[1] < 2.7, "{variance:?}");
        let norms = raw.norm_scalaropt_dim(2, [1i64].as_slice(), false).mean(Kind::Float).double_value(&[]);
        assert!((norms - 1.0).abs() < 1e-4, "{norms}");
    }

    #[test]
    fn an_lda_start_projects_onto_what_tells_species_apart_not_onto_what_varies_most() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        // 4 species x 10 photos in 8-D: photos of one species spread widely along axis 0, while
        // the species differ only by small steps along axis 5.
        let labels: Vec<usize> = (0..40).map(|i| i / 10).collect();
        let noise = Tensor::randn([40, 8], (Kind::Float, tch::Device::Cpu))
            * Tensor::from_slice(&[9.0f32, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]);
        let steps: Vec<f32> =
            labels.iter().flat_map(|&l| (0..8).map(move |axis| if axis == 5 { 2.0 * l as f32 } else { 0.0 })).collect();
        let features = noise + Tensor::from_slice(&steps).view([40, 8]);
        let leading = |start: Projection| {
            let mut head = Head::new(&vs.root().sub(format!("{start:?}")), HeadKind::Residual, 8, 2, 0.0);
            head.initialise(&features, &labels, start, 0.1);
            let row: Vec<f32> = Vec::try_from(head.projection.as_ref().unwrap().get(0).abs()).unwrap();
            row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
        };
        assert_eq!(leading(Projection::Pca), 0, "PCA follows the largest spread");
        assert_eq!(leading(Projection::Lda), 5, "LDA follows the species");
    }

    #[test]
    fn more_dimensions_than_photos_leave_the_extra_directions_at_zero() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut head = Head::new(&vs.root(), HeadKind::Residual, 8, 6, 0.0);
        let features = Tensor::randn([3, 8], (Kind::Float, tch::Device::Cpu));
        head.initialise(&features, &[], Projection::Pca, 0.0);
        let raw = tch::no_grad(|| head.raw(&features));
        // 3 photos span at most 2 centred directions (the third singular value is ~0).
        assert!(raw.narrow(1, 3, 3).abs().max().double_value(&[]) < 1e-5, "{raw}");
        assert!(raw.isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn a_constant_coordinate_is_the_last_of_d_and_shortens_weak_projections_more() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut head = Head::new(&vs.root(), HeadKind::Residual, 8, 4, 0.25);
        let features = Tensor::randn([50, 8], (Kind::Float, tch::Device::Cpu)) + 2.0;
        head.initialise(&features, &[], Projection::Pca, 0.0);
        let raw = tch::no_grad(|| head.raw(&features));
        assert_eq!(raw.size(), [50, 4], "D - 1 projected coordinates and the constant");
        let last: Vec<f32> = Vec::try_from(raw.select(1, 3)).unwrap();
        assert!(last.iter().all(|&x| x == 0.25), "{last:?}");
        // After normalising, the constant's share is larger the shorter the projection: a photo
        // at the centre is all constant.
        let unit = tch::no_grad(|| {
            head.forward(&Tensor::cat(
                &[features.narrow(0, 0, 1), features.mean_dim([0i64].as_slice(), true, Kind::Float)],
                0,
            ))
        });
        let shares: Vec<f32> = Vec::try_from(unit.select(1, 3)).unwrap();
        assert!(shares[0] < 0.9 && (shares[1] - 1.0).abs() < 1e-4, "{shares:?}");
        // The study head has no projection to anchor: it ignores the option.
        let study = Head::new(&vs.root().sub("study"), HeadKind::Study, 8, 4, 0.25);
        assert_eq!(tch::no_grad(|| study.raw(&features)).size(), [50, 4]);
    }
}
