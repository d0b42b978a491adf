fn main() -> std::process::ExitCode {
    sporeprint_device::cli::main()
}
