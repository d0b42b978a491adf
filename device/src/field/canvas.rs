//! An in-memory RGB565 frame: what every display backend shows and what tests look at.
//!
//! Written here rather than taken from a crate because it is the one type every backend
//! consumes (PNG, framebuffer, SPI): a plain `Vec<Rgb565>` with a `DrawTarget` is all it needs.

use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<Rgb565>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas { width, height, pixels: vec![Rgb565::BLACK; (width * height) as usize] }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn pixel(&self, x: u32, y: u32) -> Rgb565 {
        self.pixels[(y * self.width + x) as usize]
    }

    pub fn pixels(&self) -> &[Rgb565] {
        &self.pixels
    }

    /// Little-endian RGB565, row by row: the Linux framebuffer's and most SPI panels' format.
    pub fn to_rgb565_le(&self) -> Vec<u8> {
        self.pixels.iter().flat_map(|&p| RawU16::from(p).into_inner().to_le_bytes()).collect()
    }

    pub fn to_rgb8(&self) -> image::RgbImage {
        image::RgbImage::from_fn(self.width, self.height, |x, y| {
            let c = Rgb888::from(self.pixel(x, y));
            image::Rgb([c.r(), c.g(), c.b()])
        })
    }

    /// Writes the frame as a PNG, atomically (a viewer never reads half a frame).
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        self.to_rgb8().write_to(&mut bytes, image::ImageFormat::Png)?;
        sporeprint_shared::store::write_atomically(path, bytes.get_ref())
            .map_err(|e| anyhow::anyhow!("{}: cannot write the frame: {e}", path.display()))
    }
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Rgb565>>,
    {
        for Pixel(point, colour) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y))
                && x < self.width
                && y < self.height
            {
                self.pixels[(y * self.width + x) as usize] = colour;
            }
        }
        Ok(())
    }
}
