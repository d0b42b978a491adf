//! The fuzz targets' checks (`shared/fuzz`, `tests/fuzz_checks`) on the inputs committed from
//! their corpora (`tests/fuzz/<target>/`): the minimised corpus after each fuzzing campaign, plus
//! any input that ever crashed. Run in the normal suite, so what the fuzzer once found stays fixed.

mod fuzz_checks;

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn frame_decoder_corpus() {
    let cases = inputs("frame_decoder");
    assert!(cases.len() >= 10, "the corpus is missing");
    let decoded: usize = cases.iter().map(|(_, data)| fuzz_checks::frame_input(data)).sum();
    assert!(decoded >= 10, "only {decoded} inputs hold a valid request: the checks ran on almost nothing");
}

#[test]
fn table_decoder_corpus() {
    let cases = inputs("table_decoder");
    assert!(cases.len() >= 5, "the corpus is missing");
    let decoded: usize = cases.iter().map(|(_, data)| fuzz_checks::table_input(data)).sum();
    assert!(decoded >= 5, "only {decoded} inputs hold a valid table: the checks ran on almost nothing");
}
