fn main() -> std::process::ExitCode {
    segdistill::cli::main()
}
