//! Converges roles and databases of a running PostgreSQL to a validated spec: observe the
//! catalog, plan operations as data, apply them in one place. (Skeleton: filled by its issue.)
