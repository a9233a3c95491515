//! Decides when the compute was last active (for auto-suspend) by polling Postgres' activity
//! views. (Skeleton: filled by the compute_ctl issue.)
