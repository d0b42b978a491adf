//! `sporeprint report RUN... --out DIR`: charts (PNG) and one self-contained HTML page.
//!
//! Per run: loss and triplet-accuracy curves (`metrics.jsonl`), the unseen species' embeddings
//! in 2-D (PCA; coloured by species, like the study's cluster figure) and, for a few validation
//! photos, their 5 nearest training photos with distances (`embeddings.json`, written by
//! `sporeprint eval`). Across runs: one comparison table (`eval.json` of each run, or an
//! evaluation JSON file such as the untrained baseline's), with the study's numbers on top.
//!
//! PCA only: no well-kept Rust crate does t-SNE or UMAP without a heavy numeric stack.

use crate::eval::calibration::Reliability;
use crate::eval::metrics;
use crate::eval::{EmbeddingDump, EvalReport, VariantReport};
use crate::train::{self, EpochMetrics, TrainConfig};
use anyhow::{Context, anyhow};
use base64::Engine;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// Run directories (with eval.json from `sporeprint eval`), or evaluation JSON files.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where the PNG charts and index.html go.
    #[arg(long)]
    pub out: PathBuf,
}

/// Everything known about one run (or one bare evaluation).
struct Run {
    name: String,
    config: Option<TrainConfig>,
    metrics: Vec<EpochMetrics>,
    eval: Option<EvalReport>,
    embeddings: Option<EmbeddingDump>,
}

fn read<T: for<'de> serde::Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}: unexpected contents", path.display()))?))
}

fn load(path: &Path) -> anyhow::Result<Run> {
    let name = path.file_stem().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    if path.is_file() {
        let eval = read::<EvalReport>(path)?;
        return Ok(Run { name, config: None, metrics: vec![], eval, embeddings: None });
    }
    anyhow::ensure!(path.is_dir(), "{}: neither a run directory nor an evaluation file", path.display());
    let metrics = match std::fs::read_to_string(path.join(train::METRICS)) {
        Ok(text) => text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?,
        Err(_) => vec![],
    };
    Ok(Run {
        name,
        config: read(&path.join(train::CONFIG))?,
        metrics,
        eval: read(&path.join("eval.json"))?,
        embeddings: read(&path.join("embeddings.json"))?,
    })
}

pub fn report(args: &ReportArgs) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    let runs: Vec<Run> = args.runs.iter().map(|p| load(p)).collect::<anyhow::Result<_>>()?;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sporeprint report</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}\
         figure{display:inline-block;margin:4px;text-align:center;font-size:12px}img{max-width:100%}</style></head><body>\
         <h1>sporeprint report</h1>",
    );
    html.push_str(&comparison(&runs));
    let markdown = args.out.join("comparison.md");
    std::fs::write(&markdown, comparison_markdown(&runs))
        .with_context(|| format!("{}: cannot write", markdown.display()))?;
    for run in &runs {
        let _ = write!(html, "<h2>{}</h2>", escape(&run.name));
        if let Some(config) = &run.config {
            let _ = write!(
                html,
                "<p>{:?}, {:?} head, D = {}, mining {:?}, margin {}, lr {}{}</p>",
                config.backbone,
                config.head,
                config.embedding_dim,
                config.mining,
                config.margin,
                config.lr,
                if config.freeze_backbone { ", frozen backbone" } else { "" }
            );
        }
        if !run.metrics.is_empty() {
            let path = args.out.join(format!("{}-curves.png", run.name));
            curves(&run.metrics, &path, &run.name)?;
            html.push_str(&img(&path)?);
            html.push_str(
                "<p>Training: the loss and accuracy of the run's own mining strategy (e.g. batch-all: active \
                 triplets only). Validation: fixed triplets (a validation photo, a training photo of its species, a \
                 validation photo of another species), the same every epoch. Prototype top-1: validation photos \
                 nearest to their species' prototype (training photos' mean), which picks the best epoch.</p>",
            );
        }
        if let Some(dump) = &run.embeddings {
            let path = args.out.join(format!("{}-pca.png", run.name));
            pca_chart(dump, &path, &run.name)?;
            html.push_str(&img(&path)?);
            html.push_str(&neighbours(dump)?);
        }
    }
    html.push_str("</body></html>\n");
    let index = args.out.join("index.html");
    std::fs::write(&index, html).with_context(|| format!("{}: cannot write", index.display()))?;
    Ok(index)
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// The comparison's columns after the run and variant names, and the study's row in them.
const COLUMNS: [&str; 13] = [
    "triplet acc",
    "centroid",
    "5-NN",
    "proto top-1",
    "proto top-3",
    "P@1 unseen",
    "MAP@R unseen",
    "NMI unseen",
    "1-shot (study)",
    "3-shot (study)",
    "1-shot proto top-1",
    "3-shot proto top-1",
    "unseen rejected",
];
const STUDY: [&str; 13] = ["", "", "65.1", "", "", "", "", "", "20", "28", "", "", ""];

/// One variant's numbers, in the order of [`COLUMNS`].
fn cells(v: &VariantReport) -> Vec<String> {
    let kshot = v.unseen.as_ref().map_or(&[][..], |u| &u.kshot[..]);
    let shot = |k: usize, f: &dyn Fn(&crate::eval::KShot) -> f64| {
        kshot.iter().find(|s| s.shots == k).map_or(String::new(), |s| pct(f(s)))
    };
    let unseen = |f: &dyn Fn(&crate::eval::UnseenMetrics) -> String| v.unseen.as_ref().map_or(String::new(), f);
    vec![
        pct(v.triplet_accuracy),
        pct(v.centroid_accuracy),
        pct(v.knn_accuracy),
        pct(v.prototype_top1),
        pct(v.prototype_top3),
        unseen(&|u| pct(u.unseen_retrieval.precision_at_1)),
        unseen(&|u| pct(u.unseen_retrieval.map_at_r)),
        unseen(&|u| format!("{:.3}", u.unseen_nmi)),
        shot(1, &|s| s.study_top3_photos.mean),
        shot(3, &|s| s.study_top3_photos.mean),
        shot(1, &|s| s.prototype_top1.mean),
        shot(3, &|s| s.prototype_top1.mean),
        v.open_set.unseen_rejected.map_or(String::new(), pct),
    ]
}

fn html_row(tag: &str, cells: &[String]) -> String {
    let cells: String = cells.iter().map(|c| format!("<{tag}>{}</{tag}>", escape(c))).collect();
    format!("<tr>{cells}</tr>")
}

fn markdown_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn with_names(run: &str, variant: &str, rest: &[String]) -> Vec<String> {
    [run.to_string(), variant.to_string()].into_iter().chain(rest.iter().cloned()).collect()
}

fn header() -> Vec<String> {
    with_names("run", "variant", &COLUMNS.map(String::from))
}

fn study() -> Vec<String> {
    with_names("study (2019)", "", &STUDY.map(String::from))
}

/// One row per run: the plain variant's numbers (and the best variant's where it differs).
fn comparison(runs: &[Run]) -> String {
    let mut html = String::from(
        "<h2>Comparison</h2><p>Percentages; k-shot: mean over random draws. Study: ResNet-50 + 3 linear layers, \
         triplet loss, its best numbers (5-NN: base 128).</p><table>",
    );
    html.push_str(&html_row("th", &header()));
    html.push_str(&html_row("td", &study()));
    for run in runs {
        let Some(eval) = &run.eval else { continue };
        let best = eval.variants.iter().max_by(|a, b| a.knn_accuracy.total_cmp(&b.knn_accuracy));
        let plain = eval.variants.iter().find(|v| v.variant == "plain");
        for v in plain.into_iter().chain(best.filter(|b| Some(b.variant.as_str()) != plain.map(|p| p.variant.as_str())))
        {
            html.push_str(&html_row("td", &with_names(&run.name, &v.variant, &cells(v))));
        }
    }
    html.push_str("</table>");
    html
}

/// The comparison as a Markdown table (for READMEs and notes): one row per run and variant.
fn comparison_markdown(runs: &[Run]) -> String {
    let mut text = markdown_row(&header());
    text.push_str(&markdown_row(&vec!["---".to_string(); 2 + COLUMNS.len()]));
    text.push_str(&markdown_row(&study()));
    for run in runs {
        let Some(eval) = &run.eval else { continue };
        for v in &eval.variants {
            text.push_str(&markdown_row(&with_names(&run.name, &v.variant, &cells(v))));
        }
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn img(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(format!(
        "<p><img src=\"data:image/png;base64,{}\" alt=\"{}\"></p>",
        base64::engine::general_purpose::STANDARD.encode(bytes),
        escape(&path.file_name().unwrap_or_default().to_string_lossy())
    ))
}

/// plotters' errors borrow the backend: flatten them into messages.
fn drawn<T, E: std::fmt::Display>(result: Result<T, E>) -> anyhow::Result<T> {
    result.map_err(|e| anyhow!("drawing a chart: {e}"))
}

/// Loss and accuracies per epoch, training and validation.
pub fn curves(metrics: &[EpochMetrics], path: &Path, title: &str) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1100, 440)).into_drawing_area();
    drawn(root.fill(&WHITE))?;
    let root = drawn(root.titled(title, ("sans-serif", 24)))?;
    let (left, right) = root.split_horizontally(550);
    let last = metrics.iter().map(|m| m.epoch).max().unwrap_or(1).max(2) as f64;
    let top_loss = metrics.iter().flat_map(|m| [m.train_loss, m.validation_loss]).fold(0.0, f64::max) * 1.15;
    type Series<'a> = (&'a str, RGBColor, fn(&EpochMetrics) -> f64);
    // Legends go where the curves are not: losses fall, accuracies rise.
    let panels: [(&DrawingArea<_, _>, &str, f64, SeriesLabelPosition, &[Series]); 2] = [
        (
            &left,
            "loss",
            top_loss.max(1e-3),
            SeriesLabelPosition::UpperRight,
            &[
                ("train (the run's own loss)", BLUE, |m| m.train_loss),
                ("validation (triplets)", RED, |m| m.validation_loss),
            ],
        ),
        (
            &right,
            "accuracy",
            1.0,
            SeriesLabelPosition::LowerRight,
            &[
                ("train (the run's own)", BLUE, |m| m.train_triplet_accuracy),
                ("validation (triplets)", RED, |m| m.validation_triplet_accuracy),
                ("validation (prototype top-1)", GREEN, |m| m.validation_prototype_accuracy),
            ],
        ),
    ];
    for (area, caption, top, legend_at, series) in panels {
        let mut chart = drawn(
            ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(1f64..last, 0f64..top),
        )?;
        drawn(
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(caption)
                .x_labels((last as usize).min(20))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style(("sans-serif", 15))
                .draw(),
        )?;
        for &(label, colour, value) in series {
            let points: Vec<(f64, f64)> = metrics.iter().map(|m| (m.epoch as f64, value(m))).collect();
            line_with_points(&mut chart, points, colour.to_rgba(), 3, label.to_string())?;
        }
        legend(&mut chart, legend_at)?;
    }
    drawn(root.present())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A line through `points` with a dot of `radius` at each, named `label` in the legend.
fn line_with_points(
    chart: &mut Chart,
    points: Vec<(f64, f64)>,
    colour: RGBAColor,
    radius: i32,
    label: String,
) -> anyhow::Result<()> {
    drawn(chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2))))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    drawn(chart.draw_series(points.into_iter().map(|p| Circle::new(p, radius, colour.filled()))))?;
    Ok(())
}

/// The series' legend, in a box at `position`.
fn legend<'b>(chart: &mut Chart<'b, 'b>, position: SeriesLabelPosition) -> anyhow::Result<()> {
    drawn(
        chart
            .configure_series_labels()
            .position(position)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw(),
    )
}

/// A reliability diagram: for each confidence bin, the share answered right against the mean
/// confidence, one line per set of photos; on the diagonal, a confidence means what it says.
/// Bins with fewer than 3 photos are left out (their accuracy is noise).
pub fn reliability_chart(path: &Path, title: &str, sets: &[(&str, &Reliability)]) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (720, 640)).into_drawing_area();
    drawn(root.fill(&WHITE))?;
    let mut chart = drawn(
        ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64),
    )?;
    drawn(
        chart
            .configure_mesh()
            .x_desc("confidence shown (top answer)")
            .y_desc("share of those answers that were right")
            .label_style(("sans-serif", 15))
            .draw(),
    )?;
    drawn(chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4).stroke_width(1))))?
        .label("calibrated")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4).stroke_width(1)));
    for (i, &(label, reliability)) in sets.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> =
            reliability.bins.iter().filter(|b| b.photos >= 3).map(|b| (b.confidence, b.accuracy)).collect();
        let label = format!("{label}: ECE {:.3} ({} photos)", reliability.ece, reliability.photos);
        line_with_points(&mut chart, points, colour, 4, label)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    drawn(root.present())
}

/// The first two principal components of `rows` (power iteration with deflation; the rows are
/// centred here). Returns the projections.
pub fn pca_2d(rows: &[Vec<f32>]) -> Vec<(f64, f64)> {
    let dim = rows.first().map_or(0, Vec::len);
    let mean = sporeprint_shared::vector::mean(rows).unwrap_or_default();
    let centred: Vec<Vec<f64>> =
        rows.iter().map(|r| r.iter().zip(&mean).map(|(x, m)| (x - m) as f64).collect()).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut components: Vec<Vec<f64>> = vec![];
    for c in 0..2 {
        let mut v: Vec<f64> = (0..dim).map(|i| if i % 2 == c { 1.0 } else { 0.5 }).collect();
        for _ in 0..200 {
            // v <- X^T X v, orthogonal to the components found so far.
            let xv: Vec<f64> = centred.iter().map(|r| dot(r, &v)).collect();
            let mut next = vec![0.0; dim];
            for (r, s) in centred.iter().zip(&xv) {
                next.iter_mut().zip(r).for_each(|(n, x)| *n += s * x);
            }
            for found in &components {
                let along = dot(&next, found);
                next.iter_mut().zip(found).for_each(|(n, f)| *n -= along * f);
            }
            let norm = dot(&next, &next).sqrt();
            if norm == 0.0 {
                break;
            }
            v = next.into_iter().map(|x| x / norm).collect();
        }
        components.push(v);
    }
    centred.iter().map(|r| (dot(r, &components[0]), dot(r, &components[1]))).collect()
}

/// The unseen species' photos in the plane of their first two principal components.
fn pca_chart(dump: &EmbeddingDump, path: &Path, title: &str) -> anyhow::Result<()> {
    let unseen: Vec<_> = dump.rows.iter().filter(|r| r.set == "unseen").collect();
    anyhow::ensure!(!unseen.is_empty(), "no unseen photos in the embeddings");
    let points = pca_2d(&unseen.iter().map(|r| r.embedding.clone()).collect::<Vec<_>>());
    let span = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = points.iter().map(f).fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let pad = (hi - lo).max(1e-6) * 0.08;
        (lo - pad)..(hi + pad)
    };
    let root = BitMapBackend::new(path, (1100, 700)).into_drawing_area();
    drawn(root.fill(&WHITE))?;
    let (plot, legend) = root.split_horizontally(780);
    let mut chart = drawn(
        ChartBuilder::on(&plot)
            .caption(format!("{title}: unseen species, PCA of the embeddings"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(span(|p| p.0), span(|p| p.1)),
    )?;
    drawn(chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").label_style(("sans-serif", 14)).draw())?;
    let labels: Vec<usize> =
        metrics::by_label(&unseen.iter().map(|r| r.label).collect::<Vec<_>>()).into_keys().collect();
    for (i, &label) in labels.iter().enumerate() {
        let own: Vec<(f64, f64)> =
            unseen.iter().zip(&points).filter(|(r, _)| r.label == label).map(|(_, &p)| p).collect();
        drawn(chart.draw_series(own.into_iter().map(|p| marker(i, p))))?;
        let y = 30 + 26 * i as i32;
        drawn(legend.draw(&marker(i, (14, y))))?;
        let name = dump.species.get(label).map_or("?", String::as_str);
        drawn(legend.draw(&Text::new(name.replace('_', " "), (28, y - 9), ("sans-serif", 17))))?;
    }
    drawn(root.present())
}

/// Species `i`'s marker: a colour, and a shape per group of 10 so close colours stay apart.
fn marker<C: Clone + 'static, DB: DrawingBackend>(i: usize, at: C) -> DynElement<'static, DB, C>
where
    Circle<C, i32>: Drawable<DB>,
    TriangleMarker<C, i32>: Drawable<DB>,
    Cross<C, i32>: Drawable<DB>,
    for<'a> &'a Circle<C, i32>: PointCollection<'a, C>,
    for<'a> &'a TriangleMarker<C, i32>: PointCollection<'a, C>,
    for<'a> &'a Cross<C, i32>: PointCollection<'a, C>,
{
    let colour = Palette99::pick(i).to_rgba();
    match i / 10 {
        0 => Circle::new(at, 7, colour.filled()).into_dyn(),
        1 => TriangleMarker::new(at, 8, colour.filled()).into_dyn(),
        _ => Cross::new(at, 7, colour.stroke_width(3)).into_dyn(),
    }
}

/// For a few validation photos (different species), the 5 nearest training photos.
fn neighbours(dump: &EmbeddingDump) -> anyhow::Result<String> {
    let train: Vec<_> = dump.rows.iter().filter(|r| r.set == "train").collect();
    let gallery: Vec<Vec<f32>> = train.iter().map(|r| r.embedding.clone()).collect();
    let mut html = String::from("<h3>Nearest training photos of some validation photos</h3><table>");
    let mut shown = std::collections::BTreeSet::new();
    for query in dump.rows.iter().filter(|r| r.set == "validation") {
        if shown.len() == 4 || !shown.insert(query.label / 37) {
            continue; // 4 queries, spread over the alphabet
        }
        let species = |label: usize| dump.species.get(label).cloned().unwrap_or_default().replace('_', " ");
        let _ = write!(html, "<tr><td>{}<br>{}</td>", thumbnail(&query.path)?, escape(&species(query.label)));
        for i in metrics::nearest(&query.embedding, &gallery, 5, None) {
            let hit = train[i].label == query.label;
            let distance = sporeprint_shared::vector::euclidean(&query.embedding, &gallery[i]);
            let _ = write!(
                html,
                "<td style=\"background:{}\">{}<br>{}<br>d = {distance:.3}</td>",
                if hit { "#d8f5d0" } else { "#fff" },
                thumbnail(&train[i].path)?,
                escape(&species(train[i].label))
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</table><p>Green: same species as the query.</p>");
    Ok(html)
}

fn thumbnail(path: &Path) -> anyhow::Result<String> {
    let image = sporeprint_shared::image_io::open_rgb(path, &sporeprint_shared::PreprocessSpec::EFFICIENTNET_LITE)?;
    let small = image::imageops::thumbnail(&image, 112, 112);
    let mut bytes = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80).encode_image(&small)?;
    Ok(format!(
        "<img width=\"112\" src=\"data:image/jpeg;base64,{}\">",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_direction_of_largest_spread() {
        // Spread along (1, 1, 0) ten times more than along (0, 0, 1).
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                let t = i as f32 - 9.5;
                vec![t, t, 0.1 * (i % 3) as f32]
            })
            .collect();
        let projected = pca_2d(&rows);
        let first: Vec<f64> = projected.iter().map(|p| p.0).collect();
        // PC 1 is (1,1,0)/sqrt2 up to sign: projections are t * sqrt2.
        for (i, p) in first.iter().enumerate() {
            assert!((p.abs() - ((i as f64 - 9.5).abs() * 2f64.sqrt())).abs() < 1e-3, "{p}");
        }
    }
}
