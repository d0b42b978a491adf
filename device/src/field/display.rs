//! Where screens go: `--display png:DIR | fb:/dev/fbN | none`.
//!
//! - `png:DIR`: every screen as a numbered PNG (`0001-answer.png`, ...): headless runs, tests,
//!   and a record of a session.
//! - `fb:/dev/fbN`: the Linux framebuffer, which is how SPI panels are driven on a Pi (the
//!   kernel's `fbtft`/`panel-mipi-dbi` overlays, e.g. `dtoverlay=mipi-dbi-spi` for an ST7789),
//!   HDMI too. Its geometry comes from sysfs; 16-bit (RGB565) and 32-bit (XRGB) are written.
//! - `spi:/dev/spidevB.C,dc=N,rst=N[,gpio=/dev/gpiochipN][,size=WxH]`: an ST7789 panel driven
//!   directly from user space (`mipidsi` over `linux-embedded-hal`'s spidev and GPIO lines),
//!   for Pis without the kernel overlay; e.g. the common 240x240 1.3" HATs use `dc=25,rst=27`.
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
    Spi(SpiPanel),
    None,
}

/// An ST7789 panel on an SPI bus, with its data/command and reset lines.
#[derive(Clone, Debug, PartialEq)]
pub struct SpiPanel {
    pub device: PathBuf,
    pub gpio_chip: PathBuf,
    pub dc: u32,
    pub reset: u32,
    pub size: (u16, u16),
}

impl FromStr for SpiPanel {
    type Err = String;
    /// `DEVICE,dc=N,rst=N[,gpio=CHIP][,size=WxH]`
    fn from_str(s: &str) -> Result<Self, String> {
        let usage =
            || format!("spi display \"{s}\": expected /dev/spidevB.C,dc=N,rst=N[,gpio=/dev/gpiochipN][,size=WxH]");
        let mut parts = s.split(',');
        let device = parts.next().filter(|d| !d.is_empty()).ok_or_else(usage)?;
        let mut panel = SpiPanel {
            device: device.into(),
            gpio_chip: "/dev/gpiochip0".into(),
            dc: u32::MAX,
            reset: u32::MAX,
            size: (240, 240),
        };
        for part in parts {
            let (key, value) = part.split_once('=').ok_or_else(usage)?;
            let number = || value.parse::<u32>().map_err(|_| usage());
            match key {
                "dc" => panel.dc = number()?,
                "rst" => panel.reset = number()?,
                "gpio" => panel.gpio_chip = value.into(),
                "size" => {
                    let (w, h) = value.split_once('x').ok_or_else(usage)?;
                    panel.size = (w.parse().map_err(|_| usage())?, h.parse().map_err(|_| usage())?);
                }
                _ => return Err(usage()),
            }
        }
        if panel.dc == u32::MAX || panel.reset == u32::MAX {
            return Err(usage());
        }
        Ok(panel)
    }
}

impl FromStr for DisplaySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("png", path)) if !path.is_empty() => Ok(DisplaySpec::Png(path.into())),
            Some(("fb", path)) if !path.is_empty() => Ok(DisplaySpec::Framebuffer(path.into())),
            Some(("spi", panel)) => Ok(DisplaySpec::Spi(panel.parse()?)),
            None if s == "fb" => Ok(DisplaySpec::Framebuffer("/dev/fb0".into())),
            None if s == "none" => Ok(DisplaySpec::None),
            _ => Err(format!("unknown display \"{s}\"; expected png:DIR, fb:/dev/fbN, spi:DEVICE,dc=N,... or none")),
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
    panel: Option<spi::Panel>,
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
            DisplaySpec::Spi(_) | DisplaySpec::None => None,
        };
        let panel = match spec {
            DisplaySpec::Spi(panel) => Some(spi::Panel::open(panel)?),
            _ => None,
        };
        Ok(Display { spec: spec.clone(), frames: 0, framebuffer, panel })
    }

    /// The canvas size this display wants, if it has one of its own (a framebuffer does).
    pub fn native_size(&self) -> Option<(u32, u32)> {
        match (&self.framebuffer, &self.spec) {
            (Some((_, g)), _) => Some((g.width, g.height)),
            (None, DisplaySpec::Spi(panel)) => Some((panel.size.0.into(), panel.size.1.into())),
            _ => None,
        }
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
            (DisplaySpec::Spi(_), _) => self.panel.as_mut().map_or(Ok(()), |panel| panel.show(canvas)),
            _ => Ok(()),
        }
    }
}

#[cfg(target_os = "linux")]
mod spi {
    use super::{Canvas, SpiPanel};
    use anyhow::{Context, anyhow};
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};
    use mipidsi::interface::SpiInterface;
    use mipidsi::models::ST7789;
    use mipidsi::options::ColorInversion;

    type Driver = mipidsi::Display<SpiInterface<'static, SpidevDevice, CdevPin>, ST7789, CdevPin>;

    pub struct Panel {
        driver: Driver,
        size: (u16, u16),
    }

    impl Panel {
        pub fn open(spec: &SpiPanel) -> anyhow::Result<Panel> {
            let context = || format!("display spi:{}", spec.device.display());
            let mut spi = SpidevDevice::open(&spec.device).map_err(|e| anyhow!("{e:?}")).with_context(context)?;
            let options = linux_embedded_hal::spidev::SpidevOptions::new()
                .max_speed_hz(32_000_000)
                .mode(linux_embedded_hal::spidev::SpiModeFlags::SPI_MODE_0)
                .build();
            spi.0.configure(&options).with_context(context)?;
            let mut chip =
                Chip::new(&spec.gpio_chip).with_context(|| format!("{}: {}", context(), spec.gpio_chip.display()))?;
            let mut output = |line: u32| -> anyhow::Result<CdevPin> {
                let handle = chip.get_line(line)?.request(LineRequestFlags::OUTPUT, 1, "sporeprint")?;
                Ok(CdevPin::new(handle)?)
            };
            let dc = output(spec.dc).with_context(|| format!("{}: data/command line {}", context(), spec.dc))?;
            // The interface borrows its transfer buffer for as long as the panel lives, which is
            // the whole process: leaking 512 bytes once is simpler than a self-referential struct.
            let buffer: &'static mut [u8] = Box::leak(vec![0u8; 512].into_boxed_slice());
            let interface = SpiInterface::new(spi, dc, buffer);
            let builder = mipidsi::Builder::new(ST7789, interface)
                .display_size(spec.size.0, spec.size.1)
                .invert_colors(ColorInversion::Inverted);
            let reset = output(spec.reset).with_context(|| format!("{}: reset line {}", context(), spec.reset))?;
            let driver =
                builder.reset_pin(reset).init(&mut Delay).map_err(|e| anyhow!("{}: init failed: {e:?}", context()))?;
            Ok(Panel { driver, size: spec.size })
        }

        pub fn show(&mut self, canvas: &Canvas) -> anyhow::Result<()> {
            let (w, h) = self.size;
            if (canvas.width(), canvas.height()) != (w.into(), h.into()) {
                anyhow::bail!("display spi: the screen is {w}x{h}, the frame {}x{}", canvas.width(), canvas.height());
            }
            self.driver
                .set_pixels(0, 0, w - 1, h - 1, canvas.pixels().iter().copied())
                .map_err(|e| anyhow!("display spi: write failed: {e:?}"))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod spi {
    pub struct Panel;
    impl Panel {
        pub fn open(_: &super::SpiPanel) -> anyhow::Result<Panel> {
            anyhow::bail!("display spi: spidev exists on Linux only")
        }
        pub fn show(&mut self, _: &super::Canvas) -> anyhow::Result<()> {
            Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_specs_parse() {
        assert_eq!("png:/tmp/f".parse(), Ok(DisplaySpec::Png("/tmp/f".into())));
        assert_eq!("fb".parse(), Ok(DisplaySpec::Framebuffer("/dev/fb0".into())));
        let spi: DisplaySpec = "spi:/dev/spidev0.0,dc=25,rst=27,size=240x320".parse().unwrap();
        let DisplaySpec::Spi(panel) = spi else { panic!("{spi:?}") };
        assert_eq!((panel.dc, panel.reset, panel.size), (25, 27, (240, 320)));
        assert_eq!(panel.gpio_chip, PathBuf::from("/dev/gpiochip0"));
        assert!("spi:/dev/spidev0.0,dc=25".parse::<DisplaySpec>().unwrap_err().contains("rst=N"));
        assert!("hdmi".parse::<DisplaySpec>().is_err());
    }

    #[test]
    fn framebuffer_bytes_follow_the_format_and_stride() {
        let mut canvas = Canvas::new(2, 1);
        Pixel(Point::new(1, 0), embedded_graphics::pixelcolor::Rgb565::RED).draw(&mut canvas).unwrap();
        let g16 = FramebufferGeometry { width: 2, height: 1, bits_per_pixel: 16, stride: 6 };
        assert_eq!(framebuffer_bytes(&canvas, &g16).unwrap(), [0, 0, 0x00, 0xF8, 0, 0]);
        let g32 = FramebufferGeometry { width: 2, height: 1, bits_per_pixel: 32, stride: 8 };
        assert_eq!(framebuffer_bytes(&canvas, &g32).unwrap(), [0, 0, 0, 0xFF, 0, 0, 0xFF, 0xFF]);
        let g24 = FramebufferGeometry { bits_per_pixel: 24, ..g32 };
        assert!(framebuffer_bytes(&canvas, &g24).is_err());
    }
}
