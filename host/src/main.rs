fn main() -> std::process::ExitCode {
    sporeprint_host::cli::main()
}
