//! `metrofs copies`: what a replicated sequential write costs on this machine in copies alone.
//!
//! A paired WRITE moves its bytes more times than an unpaired one, and on one machine every move
//! is a copy on the same cores. This tool moves the bytes exactly the way a pair does, with
//! nothing else (no RPC, no LOG, no metadata), so that a benchmark can put the pair's ratio next to
//! the ratio the copies alone get, measured in the same run:
//!
//! - **unpaired** (`--listen`): the site-a role takes a stream from the client over TCP and writes
//!   it into a file through the page cache, one 1 MiB block after the other on one thread; at the
//!   end it flushes the file (`fdatasync`, as COMMIT does) and answers one byte.
//! - **paired** (`--paired-listen`): the same, and each block also goes to the site-b role over a
//!   second TCP connection, on the same thread (as an array with one worker thread does). Site-b
//!   writes each block past its page cache (`O_DIRECT`, the file allocated ahead), as a twin writes
//!   large replicated WRITEs, with `--twin-threads` writes at once. Site-a answers once its own
//!   flush is done and site-b has answered.
//!
//! `metrofs copies write ADDR --size 1GiB` is the client: one connection, 1 MiB writes, timed to
//! the answer. Each stream gets a file of its own, removed once answered (unless `--keep`).
//! bench/pair.sh runs both roles beside the arrays, on the same file systems.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The block every role reads and writes: a bench WRITE's size.
pub const BLOCK: usize = 1 << 20;
/// `O_DIRECT` wants offset, length and memory aligned to the block size; a page covers it.
const ALIGN: usize = 4096;

/// Arguments of `metrofs copies`.
#[derive(Debug, Clone, clap::Args)]
pub struct CopiesArgs {
    #[command(subcommand)]
    pub cmd: CopiesCmd,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CopiesCmd {
    /// Serve the unpaired and the paired stream until killed.
    Serve(ServeArgs),
    /// Write a stream to ADDR and print how fast it went.
    Write(WriteArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory of site-a's files (on the file system site-a's data is on).
    #[arg(long, value_name = "DIR")]
    pub a_dir: PathBuf,
    /// Directory of site-b's files (on the file system site-b's data is on).
    #[arg(long, value_name = "DIR")]
    pub b_dir: PathBuf,
    /// Where the unpaired stream is taken (IP:PORT).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// Where the paired stream is taken (IP:PORT).
    #[arg(long, value_name = "IP:PORT")]
    pub paired_listen: SocketAddr,
    /// Site-b's writes in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub twin_threads: u16,
    /// Keep each stream's files instead of removing them once answered.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// The stream's address: a `serve`'s --listen or --paired-listen.
    pub addr: SocketAddr,
    /// Bytes to write, a whole number of MiB.
    #[arg(long, default_value = "1GiB", value_parser = crate::stats::parse_size)]
    pub size: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `copies write` measured.
#[derive(Debug, Clone, Serialize)]
pub struct WriteResult {
    pub bytes: u64,
    pub secs: f64,
    pub mib_per_s: f64,
}

/// Runs `metrofs copies`.
pub fn run(args: CopiesArgs) -> Result<()> {
    match args.cmd {
        CopiesCmd::Serve(s) => {
            let roles = serve(&s)?;
            eprintln!(
                "copies: unpaired stream on {}, paired on {} (site-b on {}); until killed",
                roles.solo, roles.paired, roles.twin
            );
            loop {
                std::thread::park();
            }
        }
        CopiesCmd::Write(w) => {
            let r = write(w.addr, w.size)?;
            if w.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{:.1} MiB/s ({} bytes in {:.2} s)",
                    r.mib_per_s, r.bytes, r.secs
                );
            }
            Ok(())
        }
    }
}

/// The addresses the roles listen on.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub solo: SocketAddr,
    pub paired: SocketAddr,
    pub twin: SocketAddr,
}

/// Starts the three roles on threads of their own (site-b on a loopback port of its own) and
/// returns where they listen. They serve until the process ends.
pub fn serve(args: &ServeArgs) -> Result<Roles> {
    for d in [&args.a_dir, &args.b_dir] {
        if !d.is_dir() {
            bail!("{} is not a directory: make it first", d.display());
        }
    }
    let bind = |a: SocketAddr| TcpListener::bind(a).with_context(|| format!("listening on {a}"));
    let (solo, paired) = (bind(args.listen)?, bind(args.paired_listen)?);
    let twin = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let roles = Roles {
        solo: solo.local_addr()?,
        paired: paired.local_addr()?,
        twin: twin.local_addr()?,
    };
    let names = Arc::new(AtomicU64::new(0));
    let site_a = |l: TcpListener, forward: Option<SocketAddr>| {
        let (dir, keep, names) = (args.a_dir.clone(), args.keep, names.clone());
        move || accept_loop(l, |s| site_a_stream(s, &dir, forward, keep, &names))
    };
    std::thread::spawn(site_a(solo, None));
    std::thread::spawn(site_a(paired, Some(roles.twin)));
    let (dir, keep, threads) = (
        args.b_dir.clone(),
        args.keep,
        usize::from(args.twin_threads),
    );
    std::thread::spawn(move || {
        accept_loop(twin, |s| site_b_stream(s, &dir, threads, keep, &names))
    });
    Ok(roles)
}

/// Serves the connections of `l` one after the other; a failed one is reported and dropped.
fn accept_loop(l: TcpListener, mut stream: impl FnMut(TcpStream) -> Result<()>) {
    for s in l.incoming() {
        match s {
            Ok(s) => {
                if let Err(e) = stream(s) {
                    eprintln!("copies: a stream failed: {e:#}");
                }
            }
            Err(e) => eprintln!("copies: accept: {e}"),
        }
    }
}

/// A block of memory aligned for `O_DIRECT`: the aligned part of a slightly larger `Vec`.
struct Aligned {
    v: Vec<u8>,
    at: usize,
}

impl Aligned {
    fn new() -> Self {
        let v = vec![0u8; BLOCK + ALIGN];
        let at = (ALIGN - v.as_ptr() as usize % ALIGN) % ALIGN;
        Self { v, at }
    }
    fn block(&mut self) -> &mut [u8] {
        &mut self.v[self.at..self.at + BLOCK]
    }
}

/// Reads one whole block; `false` at the end of the stream (which must fall between blocks).
fn read_block(s: &mut TcpStream, b: &mut [u8]) -> Result<bool> {
    let mut n = 0;
    while n < b.len() {
        match s.read(&mut b[n..]) {
            Ok(0) if n == 0 => return Ok(false),
            Ok(0) => bail!("the stream ended {n} bytes into a block: send whole MiB"),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Runs `body` on a new file of `dir`, then removes the file unless `keep`, also after an error.
fn with_new_file(
    dir: &Path,
    names: &AtomicU64,
    direct: bool,
    keep: bool,
    body: impl FnOnce(File) -> Result<()>,
) -> Result<()> {
    let path = dir.join(format!(
        "metrofs-copies.{}.{}",
        std::process::id(),
        names.fetch_add(1, Ordering::Relaxed)
    ));
    let mut o = OpenOptions::new();
    o.create_new(true).write(true);
    if direct {
        o.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
    }
    let f = o.open(&path).with_context(|| {
        let why = if direct {
            " with O_DIRECT (does its file system take direct I/O?)"
        } else {
            ""
        };
        format!("creating {}{why}", path.display())
    })?;
    let r = body(f);
    if !keep {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    r
}

/// The site-a role: each block into the page cache and, paired, on to site-b; then a flush.
fn site_a_stream(
    mut s: TcpStream,
    dir: &Path,
    forward: Option<SocketAddr>,
    keep: bool,
    names: &AtomicU64,
) -> Result<()> {
    let mut twin = forward
        .map(TcpStream::connect)
        .transpose()
        .context("connecting to site-b")?;
    with_new_file(dir, names, false, keep, |file| {
        let mut buf = Aligned::new();
        let mut at = 0u64;
        while read_block(&mut s, buf.block())? {
            file.write_all_at(buf.block(), at)?;
            if let Some(t) = twin.as_mut() {
                t.write_all(buf.block()).context("sending to site-b")?;
            }
            at += BLOCK as u64;
        }
        file.sync_data()?;
        if let Some(mut t) = twin {
            t.shutdown(Shutdown::Write)?;
            t.read_exact(&mut [0u8; 1]).context("site-b's answer")?;
        }
        Ok(())
    })?;
    // Answered only once the file is removed (unless kept): none is left when the client returns.
    Ok(s.write_all(b"k")?)
}

/// The site-b role: blocks read on this thread, written past the cache by `threads` others.
fn site_b_stream(
    mut s: TcpStream,
    dir: &Path,
    threads: usize,
    keep: bool,
    names: &AtomicU64,
) -> Result<()> {
    with_new_file(dir, names, true, keep, |file| {
        let file = Arc::new(file);
        let (free_tx, free) = mpsc::channel::<Aligned>();
        for _ in 0..2 * threads {
            free_tx.send(Aligned::new())?;
        }
        let (todo_tx, todo) = mpsc::sync_channel::<(Aligned, u64)>(threads);
        let todo = Arc::new(Mutex::new(todo));
        let writers: Vec<_> = (0..threads)
            .map(|_| {
                let (todo, file, free_tx) = (todo.clone(), file.clone(), free_tx.clone());
                std::thread::spawn(move || -> Result<()> {
                    loop {
                        let next = todo.lock().expect("no writer panics holding it").recv();
                        let Ok((mut b, at)) = next else { return Ok(()) };
                        file.write_all_at(b.block(), at)
                            .context("writing (O_DIRECT)")?;
                        let _ = free_tx.send(b);
                    }
                })
            })
            .collect();
        let mut at = 0u64;
        let read = (|| -> Result<()> {
            loop {
                let mut b = free.recv()?;
                if !read_block(&mut s, b.block())? {
                    return Ok(());
                }
                // Allocated ahead, so that the direct write is an overwrite (as the twin does).
                rustix::fs::fallocate(
                    &*file,
                    rustix::fs::FallocateFlags::empty(),
                    at,
                    BLOCK as u64,
                )?;
                todo_tx.send((b, at)).context("a writer failed")?;
                at += BLOCK as u64;
            }
        })();
        drop(todo_tx);
        for w in writers {
            w.join().expect("writers do not panic")?;
        }
        read?;
        file.sync_data()?;
        Ok(())
    })?;
    // Answered only once the file is removed (unless kept): none is left when the client returns.
    Ok(s.write_all(b"k")?)
}

/// The client: `size` bytes in blocks on one connection, timed to the answer. Every block is
/// the bench's data pattern with its offset in the first 8 bytes, as `metrofs bench` writes it
/// (one buffer, stamped again for each block).
pub fn write(addr: SocketAddr, size: u64) -> Result<WriteResult> {
    if size == 0 || !size.is_multiple_of(BLOCK as u64) {
        bail!("--size must be a whole number of MiB (got {size} bytes)");
    }
    let mut s = TcpStream::connect(addr)
        .with_context(|| format!("connecting to {addr} (is `metrofs copies serve` running?)"))?;
    let mut block = crate::workload::pattern(BLOCK);
    let t = Instant::now();
    for offset in (0..size).step_by(BLOCK) {
        crate::workload::stamp(&mut block, offset);
        s.write_all(&block)?;
    }
    s.shutdown(Shutdown::Write)?;
    s.read_exact(&mut [0u8; 1])
        .context("the answer (see the server's output)")?;
    let secs = t.elapsed().as_secs_f64();
    Ok(WriteResult {
        bytes: size,
        secs,
        mib_per_s: size as f64 / (1 << 20) as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut v = std::fs::read_dir(dir)?
            .map(|e| Ok(e?.path()))
            .collect::<Result<Vec<_>>>()?;
        v.sort();
        Ok(v)
    }

    /// `path` holds `blocks` blocks as [`write`] sends them.
    fn check(path: &Path, blocks: usize) -> Result<()> {
        let bytes = std::fs::read(path)?;
        assert_eq!(bytes.len(), blocks * BLOCK, "{}", path.display());
        let mut expect = crate::workload::pattern(BLOCK);
        for (i, b) in bytes.chunks(BLOCK).enumerate() {
            crate::workload::stamp(&mut expect, (i * BLOCK) as u64);
            assert!(b == expect.as_slice(), "block {i} of {}", path.display());
        }
        Ok(())
    }

    fn start(a: &Path, b: &Path, twin_threads: u16, keep: bool) -> Result<Roles> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        serve(&ServeArgs {
            a_dir: a.into(),
            b_dir: b.into(),
            listen: any,
            paired_listen: any,
            twin_threads,
            keep,
        })
    }

    #[test]
    fn both_streams_land_whole_on_the_sides_they_name() -> Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let roles = start(a.path(), b.path(), 3, true)?;
        let r = write(roles.solo, 5 << 20)?;
        assert_eq!(r.bytes, 5 << 20);
        assert_eq!(files(a.path())?.len(), 1);
        assert!(
            files(b.path())?.is_empty(),
            "the unpaired stream must not reach site-b"
        );
        write(roles.paired, 300 << 20)?;
        let (fa, fb) = (files(a.path())?, files(b.path())?);
        assert_eq!((fa.len(), fb.len()), (2, 1));
        check(&fa[0], 5)?;
        check(&fa[1], 300)?;
        check(&fb[0], 300)
    }

    #[test]
    fn files_go_once_answered_and_a_torn_stream_is_refused() -> Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let roles = start(a.path(), b.path(), 1, false)?;
        write(roles.paired, 2 << 20)?;
        assert!(files(a.path())?.is_empty() && files(b.path())?.is_empty());
        // Half a block, then the end: no answer, and its file is gone too.
        let mut s = TcpStream::connect(roles.solo)?;
        s.write_all(&vec![1u8; BLOCK / 2])?;
        s.shutdown(Shutdown::Write)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        assert!(answer.is_empty(), "a torn stream must not be answered");
        assert!(files(a.path())?.is_empty());
        let e = write(roles.solo, 3 << 19).expect_err("1.5 MiB is refused");
        assert!(e.to_string().contains("whole number of MiB"), "{e}");
        Ok(())
    }
}
