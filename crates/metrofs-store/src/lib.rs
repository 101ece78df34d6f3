//! metrofs-store
