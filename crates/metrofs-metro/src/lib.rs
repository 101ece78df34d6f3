//! metrofs-metro
