//! Where field photos come from: `--camera dir:PATH | rpicam | v4l:/dev/videoN`.
//!
//! Every source yields an 8-bit RGB image that then goes through exactly the preprocessing
//! files go through (`shared::image_io`). A live camera that fails is retried with a growing
//! pause, so a loose cable costs a few presses, not the session.

use anyhow::{Context, bail};
use image::RgbImage;
use sporeprint_shared::{PreprocessSpec, image_io};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub enum CameraSpec {
    /// Replays the photos of a folder in name order, round and round (tests, demos, a card of
    /// photos taken with another camera).
    Dir(PathBuf),
    /// The Pi camera module through `rpicam-still` (rpicam-apps).
    Rpicam,
    /// A V4L2 device (USB webcam).
    V4l(PathBuf),
}

impl FromStr for CameraSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(CameraSpec::Dir(path.into())),
            Some(("v4l", path)) if !path.is_empty() => Ok(CameraSpec::V4l(path.into())),
            None if s == "rpicam" => Ok(CameraSpec::Rpicam),
            None if s == "v4l" => Ok(CameraSpec::V4l("/dev/video0".into())),
            _ => Err(format!("unknown camera \"{s}\"; expected dir:PATH, rpicam or v4l:/dev/videoN")),
        }
    }
}

/// One captured photo and what to call it in answers.
pub struct Frame {
    pub image: RgbImage,
    pub label: PathBuf,
}

pub struct Camera {
    spec: CameraSpec,
    /// What frames are decoded for: a large JPEG is decoded at a scale still above its resize.
    preprocess: PreprocessSpec,
    photos: Vec<PathBuf>,
    next: usize,
    /// After a failure of a live camera: no new attempt before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// First and longest pause before retrying a live camera that failed.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Camera {
    /// Opens the camera, or says what was tried and why it failed.
    pub fn open(spec: &CameraSpec, preprocess: PreprocessSpec) -> anyhow::Result<Camera> {
        let photos = match spec {
            CameraSpec::Dir(dir) => list_photos(dir)?,
            CameraSpec::Rpicam => {
                let probe = Command::new("rpicam-still").arg("--list-cameras").output();
                match probe {
                    Err(e) => bail!("camera rpicam: cannot run rpicam-still ({e}); install rpicam-apps"),
                    Ok(out) if !String::from_utf8_lossy(&out.stdout).contains(':') => {
                        bail!(
                            "camera rpicam: rpicam-still --list-cameras found no camera; is the ribbon cable seated and the camera enabled?"
                        )
                    }
                    Ok(_) => vec![],
                }
            }
            CameraSpec::V4l(device) => {
                if !device.exists() {
                    bail!("camera v4l: {} does not exist; is the webcam plugged in?", device.display());
                }
                vec![]
            }
        };
        Ok(Camera { spec: spec.clone(), preprocess, photos, next: 0, retry_at: None, backoff: FIRST_BACKOFF })
    }

    /// Takes one photo. A failure is that frame's; the next call tries again (after a pause for
    /// a live camera).
    pub fn capture(&mut self) -> anyhow::Result<Frame> {
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if now < at {
                bail!("the camera failed; retrying in {:.0} s", (at - now).as_secs_f32().ceil());
            }
        }
        let result = self.capture_once();
        match (&result, &self.spec) {
            (Ok(_), _) => {
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
            }
            (Err(_), CameraSpec::Dir(_)) => {}
            (Err(_), _) => {
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        result
    }

    fn capture_once(&mut self) -> anyhow::Result<Frame> {
        match &self.spec {
            CameraSpec::Dir(_) => {
                let path = self.photos[self.next % self.photos.len()].clone();
                self.next += 1;
                let image = image_io::open_rgb(&path, &self.preprocess)?;
                Ok(Frame { image, label: path })
            }
            CameraSpec::Rpicam => {
                let out = Command::new("rpicam-still")
                    .args([
                        "-n",
                        "--immediate",
                        "-t",
                        "1",
                        "-e",
                        "jpg",
                        "--width",
                        "1024",
                        "--height",
                        "768",
                        "-o",
                        "-",
                    ])
                    .output()
                    .context("camera rpicam: cannot run rpicam-still")?;
                if !out.status.success() {
                    bail!("camera rpicam: rpicam-still failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
                let image = image_io::decode_rgb(&out.stdout, &self.preprocess)
                    .context("camera rpicam: the photo does not decode")?;
                Ok(Frame { image, label: "rpicam".into() })
            }
            CameraSpec::V4l(device) => v4l_capture(device, &self.preprocess),
        }
    }
}

fn list_photos(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("camera dir: cannot read {}", dir.display()))?;
    let mut photos: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| sporeprint_shared::image_io::is_photo_file(p))
        .collect();
    photos.sort();
    if photos.is_empty() {
        bail!("camera dir: no .jpg, .jpeg or .png photos in {}", dir.display());
    }
    Ok(photos)
}

/// One MJPEG frame from a V4L2 device through `v4l2-ctl` (Debian's v4l-utils). A subprocess
/// rather than the `v4l` crate: that crate generates its bindings with bindgen, which needs
/// libclang at build time and a sysroot per target to cross-compile for the Pi; one still per
/// button press does not need a streaming API. The frame is a JPEG and decodes like a file.
fn v4l_capture(device: &Path, preprocess: &PreprocessSpec) -> anyhow::Result<Frame> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("frame.jpg");
    let out = Command::new("v4l2-ctl")
        .arg("--device")
        .arg(device)
        .args(["--set-fmt-video=pixelformat=MJPG", "--stream-mmap", "--stream-count=1", "--stream-skip=3"])
        .arg(format!("--stream-to={}", file.display()))
        .output()
        .with_context(|| format!("camera v4l:{}: cannot run v4l2-ctl; install v4l-utils", device.display()))?;
    if !out.status.success() {
        bail!("camera v4l:{}: v4l2-ctl failed: {}", device.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let image = image_io::open_rgb(&file, preprocess).with_context(|| format!("camera v4l:{}", device.display()))?;
    Ok(Frame { image, label: device.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_specs_parse() {
        assert_eq!("dir:/photos".parse(), Ok(CameraSpec::Dir("/photos".into())));
        assert_eq!("rpicam".parse(), Ok(CameraSpec::Rpicam));
        assert_eq!("v4l".parse(), Ok(CameraSpec::V4l("/dev/video0".into())));
        assert_eq!("v4l:/dev/video2".parse(), Ok(CameraSpec::V4l("/dev/video2".into())));
        assert!("dir:".parse::<CameraSpec>().is_err());
        assert!("webcam".parse::<CameraSpec>().is_err());
    }

    #[test]
    fn a_missing_live_camera_says_what_was_tried() {
        let error =
            Camera::open(&CameraSpec::V4l("/dev/video-sporeprint-none".into()), PreprocessSpec::EFFICIENTNET_LITE)
                .err()
                .unwrap();
        assert!(error.to_string().contains("/dev/video-sporeprint-none does not exist"), "{error}");
    }

    #[test]
    fn a_failing_live_camera_waits_before_the_next_attempt() {
        // Exists, so it opens; is no video device, so every capture fails.
        let not_a_camera = tempfile::NamedTempFile::new().unwrap();
        let mut camera =
            Camera::open(&CameraSpec::V4l(not_a_camera.path().into()), PreprocessSpec::EFFICIENTNET_LITE).unwrap();
        let first = camera.capture().err().unwrap().to_string();
        assert!(first.contains("camera v4l") && !first.contains("retrying"), "{first}");
        let second = camera.capture().err().unwrap().to_string();
        assert!(second.contains("retrying in 1 s"), "{second}");
        assert_eq!(camera.backoff, FIRST_BACKOFF * 2, "the pause doubles");
    }
}
