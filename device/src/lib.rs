//! sporeprint on the device: identification, enrollment, field mode and the device end of sync.
//! Each command is a module; `main.rs` only parses arguments and calls into here.

pub mod bench;
pub mod cli;
pub mod enroll;
pub mod field;
pub mod identify;
pub mod model;
pub mod serve;
pub mod species;

use sporeprint_shared::Origin;

/// Who this device is in the entries it enrolls (`Origin::Device`): `SPOREPRINT_DEVICE_ID` (hex),
/// else the first 32 bits of `/etc/machine-id`, which systemd creates once per installation.
/// Stable across runs, so an entry's origin survives a reboot and a sync.
pub fn this_device() -> Origin {
    let from_hex = |text: &str| u32::from_str_radix(text.trim().get(..8).unwrap_or(text.trim()), 16).ok();
    let id = std::env::var("SPOREPRINT_DEVICE_ID")
        .ok()
        .and_then(|v| from_hex(&v))
        .or_else(|| std::fs::read_to_string("/etc/machine-id").ok().and_then(|v| from_hex(&v)))
        .unwrap_or(0);
    Origin::Device(id)
}
