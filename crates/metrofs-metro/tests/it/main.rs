//! metrofs-metro's integration tests: two arrays in one process over a real loopback link.

mod pair;
mod pair_export;
mod resync_state;
