//! The `regsweep` command: all the work is in the library.

fn main() {
    std::process::exit(regsweep::cli::main().code());
}
