//! Run-time linking of libtorch for the host's binaries, tests and benches:
//! - the lib dir of the libtorch tch was built against goes on the rpath, so nobody sets
//!   `LD_LIBRARY_PATH`;
//! - `libtorch_cuda.so`, when the libtorch has it, is linked with `--no-as-needed`: nothing
//!   references its symbols directly, so the linker would drop it, and without it loaded
//!   libtorch reports no GPU even on a machine with one.

pub fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else { return };
    let lib = std::path::Path::new(&libtorch).join("lib");
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
