//! Renders the files compute_ctl writes into PGDATA (`postgresql.conf`, `pg_hba.conf` lines,
//! `standby.signal`) from a validated spec, without I/O. (Skeleton: filled by its issue.)
