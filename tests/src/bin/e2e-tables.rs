fn main() -> std::process::ExitCode {
    sporeprint_tables::cli::main()
}
