//! Lets the host's binaries, tests and benches find libtorch at run time without
//! `LD_LIBRARY_PATH`: the lib dir of the libtorch tch was built against goes on the rpath.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
