//! Clients of the Neon storage services a compute talks to at start: the pageserver
//! (basebackup over libpq) and the safekeepers (sync and `TIMELINE_STATUS`).
//! (Skeleton: filled by its issue.)
