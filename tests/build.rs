// The chain's host binary links libtorch through the host library: the same run-time linking as
// the host's own binaries (rpath, CUDA kept loaded).
#[path = "../host/build.rs"]
mod host_build;

fn main() {
    host_build::main();
}
