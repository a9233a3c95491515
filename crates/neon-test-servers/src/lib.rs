//! Test doubles of the Neon storage services that speak their real wire protocols: a
//! pageserver serving basebackups and a safekeeper answering `TIMELINE_STATUS`.
//! (Skeleton: filled by the neon-clients issue.)
