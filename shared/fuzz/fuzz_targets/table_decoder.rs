//! Table files and tables received in a sync (see `tests/fuzz_checks`).
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::table_input(data);
});
