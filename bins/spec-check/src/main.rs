//! `spec-check`: lints compute spec files. (Skeleton: filled by the spec issue.)

fn main() {
    eprintln!("spec-check: not implemented yet");
    std::process::exit(2);
}
