//! A small driver for tests: builds fully determined ops (inode from `next_inode`, a time that
//! grows by one second per op) and applies them to one fs of a store.

use bytes::Bytes;
use metrofs_core::{
    Attr, CreateHow, ExportRules, FsError, FsId, FsOp, Ino, OpBody, OpReply, SetAttr, Stability,
    Time, ROOT_INO,
};
use metrofs_store::Store;

pub struct Fx<'a> {
    pub s: &'a Store,
    pub fs: FsId,
    pub clock: u32,
}

pub const T0: u32 = 1_700_000_000;

impl<'a> Fx<'a> {
    /// A new fs `name` (id from the name's bytes) in `s`.
    pub fn new(s: &'a Store, name: &str) -> Fx<'a> {
        let id = FsId(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }));
        s.create_fs(name, id, ExportRules::default(), Time::new(T0, 0))
            .expect("create fs");
        Fx {
            s,
            fs: id,
            clock: T0,
        }
    }

    pub fn existing(s: &'a Store, fs: FsId) -> Fx<'a> {
        Fx {
            s,
            fs,
            clock: T0 + 1_000_000,
        }
    }

    /// The time the next op carries.
    pub fn next_time(&self) -> Time {
        Time::new(self.clock + 1, 7)
    }

    /// The op `body` would become: inode from `next_inode` when it creates, the next time.
    pub fn op_for(&mut self, body: OpBody) -> FsOp {
        self.clock += 1;
        let new_inode = if body.creates() {
            Some(self.s.next_inode(self.fs).expect("next_inode"))
        } else {
            None
        };
        FsOp {
            fs: self.fs,
            time: Time::new(self.clock, 7),
            new_inode,
            body,
        }
    }

    pub fn op(&mut self, body: OpBody) -> Result<OpReply, FsError> {
        let op = self.op_for(body);
        self.s.apply(&op)
    }

    pub fn create(&mut self, dir: Ino, name: &str) -> Result<Attr, FsError> {
        self.create_how(dir, name, CreateHow::Guarded(SetAttr::default()))
    }

    pub fn create_how(&mut self, dir: Ino, name: &str, how: CreateHow) -> Result<Attr, FsError> {
        let r = self.op(OpBody::Create {
            dir,
            name: name.into(),
            how,
            mode: 0o644,
            uid: 1000,
            gid: 100,
        })?;
        Ok(r.obj.expect("create answers the file"))
    }

    pub fn mkdir(&mut self, dir: Ino, name: &str) -> Result<Attr, FsError> {
        let r = self.op(OpBody::Mkdir {
            dir,
            name: name.into(),
            mode: 0o755,
            uid: 1000,
            gid: 100,
        })?;
        Ok(r.obj.expect("mkdir answers the directory"))
    }

    pub fn symlink(&mut self, dir: Ino, name: &str, target: &[u8]) -> Result<Attr, FsError> {
        let r = self.op(OpBody::Symlink {
            dir,
            name: name.into(),
            target: target.to_vec(),
            mode: 0o777,
            uid: 1000,
            gid: 100,
        })?;
        Ok(r.obj.expect("symlink answers the link"))
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<OpReply, FsError> {
        self.write_stable(ino, offset, data, Stability::Unstable)
    }

    pub fn write_stable(
        &mut self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        stable: Stability,
    ) -> Result<OpReply, FsError> {
        self.op(OpBody::Write {
            ino,
            offset,
            data: Bytes::copy_from_slice(data),
            stable,
        })
    }

    pub fn setattr(&mut self, ino: Ino, attr: SetAttr) -> Result<Attr, FsError> {
        Ok(self
            .op(OpBody::SetAttr {
                ino,
                attr,
                guard: None,
            })?
            .obj
            .expect("setattr answers the object"))
    }

    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<Attr, FsError> {
        self.setattr(
            ino,
            SetAttr {
                size: Some(size),
                ..SetAttr::default()
            },
        )
    }

    pub fn remove(&mut self, dir: Ino, name: &str) -> Result<OpReply, FsError> {
        self.op(OpBody::Remove {
            dir,
            name: name.into(),
        })
    }

    pub fn rmdir(&mut self, dir: Ino, name: &str) -> Result<OpReply, FsError> {
        self.op(OpBody::Rmdir {
            dir,
            name: name.into(),
        })
    }

    pub fn rename(
        &mut self,
        from_dir: Ino,
        from: &str,
        to_dir: Ino,
        to: &str,
    ) -> Result<OpReply, FsError> {
        self.op(OpBody::Rename {
            from_dir,
            from_name: from.into(),
            to_dir,
            to_name: to.into(),
        })
    }

    pub fn link(&mut self, ino: Ino, dir: Ino, name: &str) -> Result<OpReply, FsError> {
        self.op(OpBody::Link {
            ino,
            dir,
            name: name.into(),
        })
    }

    pub fn commit(&mut self, ino: Ino) -> Result<OpReply, FsError> {
        self.op(OpBody::Commit { ino })
    }

    pub fn lookup(&self, dir: Ino, name: &str) -> Result<Attr, FsError> {
        self.s.lookup(self.fs, dir, name.as_bytes())
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.s.getattr(self.fs, ino)
    }

    /// The whole content of a file, through READ.
    pub fn read_all(&self, ino: Ino) -> Vec<u8> {
        let size = self.getattr(ino).expect("getattr").size;
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let r = self
                .s
                .read(self.fs, ino, out.len() as u64, 1 << 20)
                .expect("read");
            assert!(!r.data.is_empty(), "short read before EOF");
            out.extend_from_slice(&r.data);
        }
        out
    }

    /// Names in `dir`, through READDIR in pages of `page`.
    pub fn names(&self, dir: Ino, page: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cookie = 0;
        loop {
            let p = self
                .s
                .readdir(self.fs, dir, cookie, page, false)
                .expect("readdir");
            for e in &p.entries {
                out.push(String::from_utf8_lossy(&e.name).into_owned());
                cookie = e.cookie;
            }
            if p.eof {
                return out;
            }
        }
    }

    pub fn assert_consistent(&self) {
        let problems = self.s.check(self.fs);
        assert!(problems.is_empty(), "check() found: {problems:#?}");
    }
}

pub const ROOT: Ino = ROOT_INO;
