//! The `sniway` command: see `sniway --help`.

fn main() -> std::process::ExitCode {
    sniway::cli::main()
}
