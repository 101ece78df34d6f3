//! metrofs-store: one array's store (skeleton, being filled in).

use std::path::Path;

use metrofs_core::{
    Attr, ExportRules, FsError, FsId, FsOp, FsStat, Ino, NewInode, OpReply, ReadDirPage, ReadReply, Time,
};
use serde::{Deserialize, Serialize};

/// Open and catalog errors.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("not implemented yet")]
    Todo,
}

/// One file system in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsInfo {
    pub id: FsId,
    pub name: String,
    pub rules: ExportRules,
    pub created: Time,
}

/// One array's store.
pub struct Store {}

impl Store {
    pub fn open(_dir: &Path) -> Result<Store, StoreError> {
        Err(StoreError::Todo)
    }
    pub fn create_fs(&self, _name: &str, _id: FsId, _rules: ExportRules, _time: Time) -> Result<FsInfo, StoreError> {
        Err(StoreError::Todo)
    }
    pub fn delete_fs(&self, _id: FsId) -> Result<(), StoreError> {
        Err(StoreError::Todo)
    }
    pub fn list_fs(&self) -> Vec<FsInfo> {
        Vec::new()
    }
    pub fn fs_by_name(&self, _name: &str) -> Option<FsInfo> {
        None
    }
    pub fn fs_by_id(&self, _id: FsId) -> Option<FsInfo> {
        None
    }
    pub fn set_export(&self, _id: FsId, _rules: ExportRules) -> Result<FsInfo, StoreError> {
        Err(StoreError::Todo)
    }
    pub fn apply(&self, _op: &FsOp) -> Result<OpReply, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn next_inode(&self, _fs: FsId) -> Result<NewInode, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn getattr(&self, _fs: FsId, _ino: Ino) -> Result<Attr, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn lookup(&self, _fs: FsId, _dir: Ino, _name: &[u8]) -> Result<Attr, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn read(&self, _fs: FsId, _ino: Ino, _offset: u64, _count: u32) -> Result<ReadReply, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn readlink(&self, _fs: FsId, _ino: Ino) -> Result<(Vec<u8>, Attr), FsError> {
        Err(FsError::NotSupp)
    }
    pub fn readdir(
        &self,
        _fs: FsId,
        _dir: Ino,
        _cookie: u64,
        _max_entries: usize,
        _plus: bool,
    ) -> Result<ReadDirPage, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn fsstat(&self, _fs: FsId) -> Result<FsStat, FsError> {
        Err(FsError::NotSupp)
    }
    pub fn sync(&self) -> Result<(), FsError> {
        Err(FsError::NotSupp)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Store>();
}
