//! metrofs-bench
