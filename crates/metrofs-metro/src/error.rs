//! Errors of catalog operations (create, delete, export). File-system ops answer
//! [`metrofs_core::FsError`] instead.

use metrofs_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    #[error("file system '{0}' does not exist (see `metrofs fs list`)")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("flush failed: {0}")]
    Flush(#[from] metrofs_core::FsError),
}
