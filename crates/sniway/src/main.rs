//! The `sniway` command: see `sniway --help`.

/// mimalloc rather than the system allocator: per idle connection the proxy's resident memory
/// grows by about a fifth less (tokio's per-socket and per-task allocations are 128-byte aligned,
/// which glibc serves with padding), at no measured CPU cost per connection; see
/// docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sniway::cli::main()
}
