//! `bench`: where the time of one identification goes, stage by stage, on this machine.
//!
//! The stages are the ones `identify` runs, called through the same `shared` functions:
//! decode (JPEG bytes to pixels), resize (the spec's resize, crop and normalisation), embed
//! (tract), search (nearest prototypes over the whole table). Each is timed on every run and the
//! median reported, so one slow run (a page fault, another process) does not move the numbers.

use crate::model::Model;
use image::{Rgb, RgbImage};
use serde::Serialize;
use sporeprint_shared::{Table, image_io};
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub variant: String,
    pub species: usize,
    pub photo: String,
    pub runs: usize,
    pub load_ms: f64,
    pub decode_ms: f64,
    pub resize_ms: f64,
    pub embed_ms: f64,
    pub search_ms: f64,
    pub total_ms: f64,
    /// Peak resident memory of the process (Linux `VmHWM`), `None` where unknown.
    pub peak_rss_mb: Option<f64>,
}

/// A photo-like 512x512 JPEG (the size of the data set's photos), for when no photo is given:
/// smooth gradients and texture, so the decoder and the resize do realistic work.
pub fn synthetic_jpeg() -> Vec<u8> {
    let image = RgbImage::from_fn(512, 512, |x, y| {
        let texture = ((x * 7 + y * 13) % 23) as u8;
        Rgb([(x / 2) as u8 ^ texture, (y / 2) as u8, ((x + y) / 4) as u8 ^ texture])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&image)
        .expect("encoding to memory cannot fail");
    bytes
}

/// Runs the pipeline `runs` times on `jpeg` and reports the median of each stage.
/// `load_ms` is measured by the caller (loading the model is done once, not per run).
pub fn run(
    model: &Model,
    table: &Table,
    jpeg: &[u8],
    photo: &str,
    runs: usize,
    load_ms: f64,
) -> anyhow::Result<Report> {
    let spec = model.embedder.spec();
    let runs = runs.max(1);
    let mut stages: [Vec<f64>; 5] = Default::default();
    // One run first, untimed: tract allocates its buffers on the first call.
    model.embedder.embed_image(&image_io::decode_rgb(jpeg, spec)?)?;
    for _ in 0..runs {
        let start = Instant::now();
        let decoded = image_io::decode_rgb(jpeg, spec)?;
        let decoded_at = Instant::now();
        let input = image_io::to_tensor(&decoded, spec);
        let resized_at = Instant::now();
        let observed = model.embedder.observe_input(&input)?;
        let embedded_at = Instant::now();
        std::hint::black_box(table.identify_with(&observed.embedding, observed.atypicality, 3)?);
        let searched_at = Instant::now();
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
        for (stage, value) in stages.iter_mut().zip([
            ms(start, decoded_at),
            ms(decoded_at, resized_at),
            ms(resized_at, embedded_at),
            ms(embedded_at, searched_at),
            ms(start, searched_at),
        ]) {
            stage.push(value);
        }
    }
    let [decode, resize, embed, search, total] = stages.map(median);
    Ok(Report {
        model: model.dir.display().to_string(),
        variant: model.variant_name.clone(),
        species: table.len(),
        photo: photo.to_string(),
        runs,
        load_ms,
        decode_ms: decode,
        resize_ms: resize,
        embed_ms: embed,
        search_ms: search,
        total_ms: total,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// The median (mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// Peak resident set size from `/proc/self/status`; `None` off Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A finished child process and what it cost.
#[derive(Debug)]
pub struct Measured {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory of the child alone (`wait4`'s `ru_maxrss`), in MB.
    pub peak_rss_mb: f64,
    pub seconds: f64,
}

/// Runs `command` to its end, its output captured, and measures its peak memory from the
/// kernel's accounting of the finished child.
///
/// A child's `ru_maxrss` starts from the peak of the parent it was forked from (the kernel keeps
/// the larger of the two across `exec`), so the parent's peak is first reset to its current
/// size (`/proc/self/clear_refs`, Linux 4.0 and later): a parent that once held a large buffer
/// does not make every child after it look large. Run it from a process that is small now.
#[cfg(target_os = "linux")]
pub fn measure_child(mut command: std::process::Command) -> std::io::Result<Measured> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    std::fs::write("/proc/self/clear_refs", "5")?;
    let started = Instant::now();
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Drained while the child runs, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals above.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Measured {
        status: std::process::ExitStatus::from_raw(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        // Linux reports ru_maxrss in kilobytes.
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The report as a table.
pub fn describe(r: &Report) -> String {
    let mut text = format!(
        "model {} ({}), {} species, photo {}, median of {} runs\n",
        r.model, r.variant, r.species, r.photo, r.runs
    );
    text.push_str("stage      ms\n");
    for (stage, ms) in [
        ("decode", r.decode_ms),
        ("resize", r.resize_ms),
        ("embed", r.embed_ms),
        ("search", r.search_ms),
        ("total", r.total_ms),
    ] {
        text.push_str(&format!("{stage:<8} {ms:>8.2}\n"));
    }
    text.push_str(&format!("model load {:.0} ms", r.load_ms));
    if let Some(mb) = r.peak_rss_mb {
        text.push_str(&format!(", peak memory {mb:.0} MB"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn the_synthetic_photo_is_a_decodable_512_pixel_jpeg() {
        let bytes = synthetic_jpeg();
        assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
        let image = image_io::decode_rgb(&bytes, &sporeprint_shared::PreprocessSpec::EFFICIENTNET_LITE).unwrap();
        assert_eq!(image.dimensions(), (512, 512));
    }
}
