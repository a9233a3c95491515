//! `compute_ctl`: turns a bare container or VM into a running PostgreSQL compute node.
//! (Skeleton: filled by the compute_ctl issue.)

fn main() {
    eprintln!("compute_ctl: not implemented yet");
    std::process::exit(2);
}
