//! metrofs-nfs
