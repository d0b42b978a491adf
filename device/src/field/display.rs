//! Where screens go: `--display png:DIR | fb:/dev/fbN | none`.
//!
//! - `png:DIR`: every screen as a numbered PNG (`0001-answer.png`, ...): headless runs, tests,
//!   and a record of a session.
//! - `fb:/dev/fbN`: the Linux framebuffer, which is how SPI panels are driven on a Pi (the
//!   kernel's `fbtft`/`panel-mipi-dbi` overlays, e.g. `dtoverlay=mipi-dbi-spi` for an ST7789),
//!   HDMI too. Its geometry comes from sysfs; 16-bit (RGB565) and 32-bit (XRGB) are written.
//! - `none`: nothing drawn (a service that only serves sync, or a benchmark).

use super::canvas::Canvas;
use anyhow::{Context, bail};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq)]
pub enum DisplaySpec {
    Png(PathBuf),
    Framebuffer(PathBuf),
    None,
}

impl FromStr for DisplaySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("png", path)) if !path.is_empty() => Ok(DisplaySpec::Png(path.into())),
            Some(("fb", path)) if !path.is_empty() => Ok(DisplaySpec::Framebuffer(path.into())),
            None if s == "fb" => Ok(DisplaySpec::Framebuffer("/dev/fb0".into())),
            None if s == "none" => Ok(DisplaySpec::None),
            _ => Err(format!("unknown display \"{s}\"; expected png:DIR, fb:/dev/fbN or none")),
        }
    }
}

/// A framebuffer's geometry, from `/sys/class/graphics/fbN`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FramebufferGeometry {
    pub width: u32,
    pub height: u32,
    pub bits_per_pixel: u32,
    /// Bytes from one row to the next (may exceed width * bytes per pixel).
    pub stride: u32,
}

pub struct Display {
    spec: DisplaySpec,
    frames: usize,
    framebuffer: Option<(std::fs::File, FramebufferGeometry)>,
}

impl Display {
    pub fn open(spec: &DisplaySpec) -> anyhow::Result<Display> {
        let framebuffer = match spec {
            DisplaySpec::Png(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("display png: cannot create {}", dir.display()))?;
                None
            }
            DisplaySpec::Framebuffer(device) => {
                let geometry = framebuffer_geometry(device)?;
                let file = std::fs::OpenOptions::new().write(true).open(device).with_context(|| {
                    format!("display fb: cannot open {} (is the user in group video?)", device.display())
                })?;
                Some((file, geometry))
            }
            DisplaySpec::None => None,
        };
        Ok(Display { spec: spec.clone(), frames: 0, framebuffer })
    }

    /// The canvas size this display wants, if it has one of its own (a framebuffer does).
    pub fn native_size(&self) -> Option<(u32, u32)> {
        self.framebuffer.as_ref().map(|(_, g)| (g.width, g.height))
    }

    /// Shows `canvas`; `kind` names the screen (PNG file names).
    pub fn show(&mut self, canvas: &Canvas, kind: &str) -> anyhow::Result<()> {
        self.frames += 1;
        match (&self.spec, &mut self.framebuffer) {
            (DisplaySpec::Png(dir), _) => canvas.save_png(&dir.join(format!("{:04}-{kind}.png", self.frames))),
            (DisplaySpec::Framebuffer(device), Some((file, geometry))) => {
                let bytes = framebuffer_bytes(canvas, geometry)?;
                file.seek(SeekFrom::Start(0))
                    .and_then(|_| file.write_all(&bytes))
                    .with_context(|| format!("display fb: cannot write {}", device.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Reads `virtual_size`, `bits_per_pixel` and `stride` of a framebuffer device from sysfs.
pub fn framebuffer_geometry(device: &Path) -> anyhow::Result<FramebufferGeometry> {
    let name = device.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let sys = Path::new("/sys/class/graphics").join(name);
    let read = |file: &str| {
        std::fs::read_to_string(sys.join(file)).with_context(|| {
            format!("display fb: {} has no {}; is it a framebuffer?", device.display(), sys.join(file).display())
        })
    };
    let size = read("virtual_size")?;
    let (w, h) = size.trim().split_once(',').context("display fb: unreadable virtual_size")?;
    let parse = |v: &str| v.trim().parse::<u32>().context("display fb: unreadable geometry");
    let (width, height, bits_per_pixel, stride) =
        (parse(w)?, parse(h)?, parse(&read("bits_per_pixel")?)?, parse(&read("stride")?)?);
    Ok(FramebufferGeometry { width, height, bits_per_pixel, stride })
}

/// The canvas in the framebuffer's pixel format, row stride included; the canvas is cropped or
/// padded with black to the framebuffer's size.
pub fn framebuffer_bytes(canvas: &Canvas, g: &FramebufferGeometry) -> anyhow::Result<Vec<u8>> {
    let bytes_per_pixel = match g.bits_per_pixel {
        16 => 2,
        32 => 4,
        other => bail!("display fb: {other} bits per pixel is not supported (16 or 32 are)"),
    };
    let mut out = vec![0u8; (g.stride * g.height) as usize];
    for y in 0..g.height.min(canvas.height()) {
        for x in 0..g.width.min(canvas.width()) {
            let at = (y * g.stride + x * bytes_per_pixel) as usize;
            let pixel = canvas.pixel(x, y);
            if bytes_per_pixel == 2 {
                let raw = embedded_graphics::pixelcolor::raw::RawU16::from(pixel).into_inner();
                out[at..at + 2].copy_from_slice(&raw.to_le_bytes());
            } else {
                let c = Rgb888::from(pixel);
                out[at..at + 4].copy_from_slice(&[c.b(), c.g(), c.r(), 0xFF]);
            }
        }
    }
    Ok(out)
}
