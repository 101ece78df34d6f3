//! RPC record marking over TCP (RFC 5531 §11).
//!
//! A record is one or more fragments; each fragment starts with a 4-byte big-endian header
//! whose top bit marks the last fragment of the record and whose low 31 bits give the
//! fragment's length. Contract of [`RecordReader::next`]:
//! - a record of one fragment (what every client sends) comes back as a [`Bytes`] slice of the
//!   read buffer, never copied, so WRITE data can go to the backend as a slice of it;
//! - a record of one fragment of [`POOLED_RECORD_MIN_BYTES`] or more (a large WRITE) is read
//!   into a buffer of its own from a [`BufPool`], used again once the record is dropped, so a
//!   stream of 1 MiB writes does not fault in fresh zeroed pages for each one;
//! - a record of several fragments is assembled into one buffer;
//! - a record whose length (all fragments together) would exceed the limit is refused with
//!   [`RecordError::TooLong`] as soon as its header is read, before anything is buffered;
//!   the connection must then be closed (its byte stream can no longer be trusted);
//! - end of stream between records is `Ok(None)`; inside a record it is
//!   [`RecordError::Truncated`].
//!
//! Replies are always one fragment: [`mark`] gives its header.

use bytes::{Buf, Bytes, BytesMut};
use metrofs_core::bufpool::BufPool;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest record accepted, in bytes: a 1 MiB WRITE (FSINFO's wtmax) plus room for the RPC
/// header, credentials (at most 2 × 400 bytes) and the WRITE arguments.
pub const RECORD_BYTES_MAX: usize = (1 << 20) + (64 << 10);

/// Read buffer growth for small records: room for many small calls per read.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// A record of one fragment at least this long is read into a buffer from the pool.
pub const POOLED_RECORD_MIN_BYTES: usize = 64 << 10;

const LAST_FRAGMENT: u32 = 0x8000_0000;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("connection closed inside a record")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The header of a reply sent as one (last) fragment of `len` bytes.
#[must_use]
pub fn mark(len: u32) -> [u8; 4] {
    debug_assert!(len & LAST_FRAGMENT == 0, "a reply is never 2 GiB");
    (len | LAST_FRAGMENT).to_be_bytes()
}

/// Reads records from one connection.
#[derive(Debug)]
pub struct RecordReader<R> {
    io: R,
    buf: BytesMut,
    /// Fragments of a record not complete yet (only for multi-fragment records).
    assembled: BytesMut,
    max: usize,
    pool: BufPool,
}

impl<R: AsyncRead + Unpin> RecordReader<R> {
    /// Reads records of at most `max` bytes from `io`; large ones into buffers from `pool`.
    #[must_use]
    pub fn new(io: R, max: usize, pool: BufPool) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            assembled: BytesMut::new(),
            max,
            pool,
        }
    }

    /// The rest of a large one-fragment record of `len` bytes, whose start (and nothing more)
    /// the buffer holds after the fragment header, read into a buffer from the pool.
    async fn read_pooled(&mut self, len: usize) -> Result<Bytes, RecordError> {
        let mut space = self.pool.take(len);
        let have = self.buf.len();
        space[..have].copy_from_slice(&self.buf);
        self.buf.clear();
        match self.io.read_exact(&mut space[have..len]).await {
            Ok(_) => Ok(self.pool.lend(space, 0..len)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(RecordError::Truncated),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    async fn fill(&mut self, want_total: usize) -> Result<bool, RecordError> {
        let spare = self.buf.capacity() - self.buf.len();
        let short = want_total.saturating_sub(self.buf.len());
        if spare < short.max(1) || spare < 512 {
            self.buf.reserve(short.max(READ_CHUNK_BYTES));
        }
        Ok(self.io.read_buf(&mut self.buf).await? > 0)
    }

    /// The next whole record, or `None` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Bytes>, RecordError> {
        loop {
            while self.buf.len() < 4 {
                if !self.fill(4).await? {
                    return if self.buf.is_empty() && self.assembled.is_empty() {
                        Ok(None)
                    } else {
                        Err(RecordError::Truncated)
                    };
                }
            }
            let header = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let last = header & LAST_FRAGMENT != 0;
            let len = (header & !LAST_FRAGMENT) as usize;
            let total = self.assembled.len() + len;
            if total > self.max {
                return Err(RecordError::TooLong {
                    len: total,
                    max: self.max,
                });
            }
            let need = 4 + len;
            if last
                && self.assembled.is_empty()
                && len >= POOLED_RECORD_MIN_BYTES
                && self.buf.len() < need
            {
                self.buf.advance(4);
                return self.read_pooled(len).await.map(Some);
            }
            while self.buf.len() < need {
                if !self.fill(need).await? {
                    return Err(RecordError::Truncated);
                }
            }
            self.buf.advance(4);
            let fragment = self.buf.split_to(len);
            if last {
                if self.assembled.is_empty() {
                    return Ok(Some(fragment.freeze()));
                }
                self.assembled.extend_from_slice(&fragment);
                return Ok(Some(self.assembled.split().freeze()));
            }
            self.assembled.extend_from_slice(&fragment);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(data: &[u8], last: bool) -> Vec<u8> {
        let len = u32::try_from(data.len()).expect("small");
        let mut v = (if last { len | LAST_FRAGMENT } else { len })
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(data);
        v
    }

    async fn read_all(input: Vec<u8>, max: usize) -> (Vec<Bytes>, Option<RecordError>) {
        let mut r = RecordReader::new(&input[..], max, BufPool::new(4 << 20));
        let mut out = Vec::new();
        loop {
            match r.next().await {
                Ok(Some(rec)) => out.push(rec),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn single_and_multi_fragment_records() {
        let mut input = frag(b"abcd", true);
        input.extend(frag(b"12", false));
        input.extend(frag(b"", false));
        input.extend(frag(b"34", true));
        input.extend(frag(b"xyz!", true));
        let (recs, err) = read_all(input, 64).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            recs,
            vec![
                Bytes::from_static(b"abcd"),
                Bytes::from_static(b"1234"),
                Bytes::from_static(b"xyz!")
            ]
        );
    }

    #[tokio::test]
    async fn too_long_is_refused_from_the_header() {
        // Announces 2 GiB - 1 bytes but sends none: refused without waiting for them.
        let (recs, err) = read_all(vec![0xff, 0xff, 0xff, 0xff], RECORD_BYTES_MAX).await;
        assert!(recs.is_empty());
        assert!(matches!(err, Some(RecordError::TooLong { .. })), "{err:?}");
        // The limit holds across fragments too.
        let mut input = frag(&[0u8; 40], false);
        input.extend(frag(&[0u8; 40], true));
        let (recs, err) = read_all(input, 64).await;
        assert!(recs.is_empty());
        assert!(
            matches!(err, Some(RecordError::TooLong { len: 80, max: 64 })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn truncated_inside_a_record() {
        let mut input = frag(b"abcdefgh", true);
        input.truncate(7);
        let (_, err) = read_all(input, 64).await;
        assert!(matches!(err, Some(RecordError::Truncated)), "{err:?}");
        let (_, err) = read_all(vec![0x80, 0], 64).await;
        assert!(
            matches!(err, Some(RecordError::Truncated)),
            "half a header: {err:?}"
        );
        let (_, err) = read_all(frag(b"ab", false), 64).await;
        assert!(
            matches!(err, Some(RecordError::Truncated)),
            "last fragment missing: {err:?}"
        );
    }

    #[tokio::test]
    async fn a_large_record_arrives_whole_across_many_reads() {
        let data: Vec<u8> = (0..RECORD_BYTES_MAX).map(|i| (i % 251) as u8).collect();
        let input = frag(&data, true);
        // A reader that hands out at most 1000 bytes per read.
        let (client, mut server) = tokio::io::duplex(1000);
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut server, &input)
                .await
                .expect("write");
        });
        let mut r = RecordReader::new(client, RECORD_BYTES_MAX, BufPool::new(4 << 20));
        let rec = r.next().await.expect("read").expect("record");
        assert_eq!(&rec[..], &data[..]);
        writer.await.expect("writer");
        assert!(r.next().await.expect("clean end").is_none());
    }

    #[tokio::test]
    async fn large_records_between_small_ones_reuse_their_buffer() {
        let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
        let mut input = Vec::new();
        for i in 0..6u8 {
            input.extend(frag(&[i; 10], true));
            input.extend(frag(&big[usize::from(i)..], true));
        }
        input.extend(frag(b"end", true));
        let (client, mut server) = tokio::io::duplex(70_000);
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut server, &input)
                .await
                .expect("write");
        });
        let pool = BufPool::new(4 << 20);
        let mut r = RecordReader::new(client, RECORD_BYTES_MAX, pool.clone());
        let mut large_at = Vec::new();
        for i in 0..6u8 {
            let small = r.next().await.expect("read").expect("record");
            assert_eq!(&small[..], &[i; 10]);
            let large = r.next().await.expect("read").expect("record");
            assert_eq!(&large[..], &big[usize::from(i)..]);
            large_at.push(large.as_ptr());
        }
        assert_eq!(&r.next().await.expect("read").expect("record")[..], b"end");
        writer.await.expect("writer");
        assert!(
            large_at.iter().all(|p| *p == large_at[0]),
            "each large record was dropped before the next: one buffer serves them all"
        );
        assert!(pool.idle_bytes() >= 1 << 20);
    }

    #[tokio::test]
    async fn the_stream_ending_inside_a_large_record_is_truncated() {
        let mut input = frag(&vec![1u8; 200_000], true);
        input.truncate(150_000);
        let (_, err) = read_all(input, RECORD_BYTES_MAX).await;
        assert!(matches!(err, Some(RecordError::Truncated)), "{err:?}");
    }

    #[test]
    fn reply_mark() {
        assert_eq!(mark(8), [0x80, 0, 0, 8]);
    }
}
