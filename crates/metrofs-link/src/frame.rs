//! Frames: the unit of everything on a link.
//!
//! # Contract
//! A frame is a fixed 20-byte head, then `header_len` bytes of header, then `body_len` bytes of
//! body. All integers are big-endian.
//!
//! ```text
//! offset size  field
//!      0    2  magic 0x4D4C ("ML"): catches a peer that is not a metrofs link at the first frame
//!      2    1  kind (see `Kind`); an unknown value is an error, never skipped
//!      3    1  flags, must be 0 (reserved for a later protocol version)
//!      4    4  header_len  <= HEADER_MAX_BYTES (64 KiB)
//!      8    4  body_len    <= BODY_MAX_BYTES   (8 MiB)
//!     12    8  request id  (0 where the kind has none)
//!     20    -  header bytes, then body bytes
//! ```
//!
//! - The *header* is small and encoded by the user of the link (e.g. postcard); the *body* is a
//!   raw attachment (file data) that travels as is: a 1 MiB write is never re-encoded.
//! - Decoding validates the head before it waits for the rest, so an absurd length is an error
//!   at once and never an allocation; the most a decoder ever reserves is one maximal frame.
//! - Decoding does not copy: header and body are `Bytes` views into the read buffer
//!   (`BytesMut::split_to(..).freeze()`). A large frame (body of [`ALIGNED_BODY_MIN_BYTES`] or
//!   more) is read into a buffer of its own from a [`BufPool`], with its body page-aligned.
//! - Malformed input is a [`FrameError`], never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use metrofs_core::bufpool::BufPool;

/// Size of the fixed head of every frame.
pub const HEAD_BYTES: usize = 20;
/// Largest header a frame may carry.
pub const HEADER_MAX_BYTES: usize = 64 * 1024;
/// Largest body a frame may carry.
pub const BODY_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Largest frame on the wire, head included: the most a decoder ever buffers.
pub const FRAME_MAX_BYTES: usize = HEAD_BYTES + HEADER_MAX_BYTES + BODY_MAX_BYTES;
/// The two bytes every frame starts with ("ML").
pub const MAGIC: u16 = 0x4D4C;

// Lengths travel as u32: the limits must fit.
const _: () = assert!(HEADER_MAX_BYTES <= u32::MAX as usize);
const _: () = assert!(BODY_MAX_BYTES <= u32::MAX as usize);

/// What a frame is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Handshake, first frame of each side: version, domain, name, nonce.
    Hello = 1,
    /// Handshake, second frame of each side: HMAC proof of the shared secret.
    Proof = 2,
    /// "I will not talk to you": a reason code and text in the header; the sender then closes.
    Refuse = 3,
    /// A call; the id names it, the reply carries the same id.
    Request = 4,
    /// The successful reply to the request with the same id.
    Response = 5,
    /// The peer could not hand the request to its handler (busy, handler panicked, none);
    /// the header is the reason as UTF-8 text.
    Fail = 6,
    /// Liveness probe; the header (an opaque timestamp) is echoed in the ack.
    Heartbeat = 7,
    /// Answer to a heartbeat, with its header echoed.
    HeartbeatAck = 8,
    /// Orderly end of the link; the header is the reason as UTF-8 text.
    Close = 9,
}

impl Kind {
    /// All kinds, in wire order.
    pub const ALL: [Kind; 9] = [
        Kind::Hello,
        Kind::Proof,
        Kind::Refuse,
        Kind::Request,
        Kind::Response,
        Kind::Fail,
        Kind::Heartbeat,
        Kind::HeartbeatAck,
        Kind::Close,
    ];

    /// The kind with this wire value, if there is one.
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == v)
    }
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a metrofs-link frame (starts with 0x{found:04x}, expected 0x{MAGIC:04x}): the peer does not speak the metrofs link protocol")]
    BadMagic { found: u16 },
    #[error("unknown frame kind {0}: the peer runs an incompatible metrofs version")]
    UnknownKind(u8),
    #[error("frame flags 0x{0:02x} are reserved and must be 0: the peer runs an incompatible metrofs version")]
    BadFlags(u8),
    #[error("frame header of {len} bytes exceeds the {max}-byte limit")]
    HeaderTooLong { len: usize, max: usize },
    #[error("frame body of {len} bytes exceeds the {max}-byte limit")]
    BodyTooLong { len: usize, max: usize },
    #[error("stream ended inside a frame ({have} of {need} bytes received)")]
    Truncated { have: usize, need: usize },
}

/// One frame. Construct with [`Frame::new`], which enforces the size limits, so every `Frame`
/// can be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    kind: Kind,
    id: u64,
    header: Bytes,
    body: Bytes,
}

impl Frame {
    /// A frame, if header and body are within [`HEADER_MAX_BYTES`] and [`BODY_MAX_BYTES`].
    pub fn new(kind: Kind, id: u64, header: Bytes, body: Bytes) -> Result<Frame, FrameError> {
        check_lengths(header.len(), body.len())?;
        Ok(Frame {
            kind,
            id,
            header,
            body,
        })
    }

    /// A frame whose header is short text and whose body is empty (Refuse, Fail, Close).
    /// Text longer than the header limit is cut (at a char boundary).
    #[must_use]
    pub fn text(kind: Kind, id: u64, text: &str) -> Frame {
        let mut end = text.len().min(HEADER_MAX_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Frame {
            kind,
            id,
            header: Bytes::copy_from_slice(&text.as_bytes()[..end]),
            body: Bytes::new(),
        }
    }

    #[must_use]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    #[must_use]
    pub fn header(&self) -> &Bytes {
        &self.header
    }

    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Header and body, without copying.
    #[must_use]
    pub fn into_parts(self) -> (Bytes, Bytes) {
        (self.header, self.body)
    }

    /// Bytes this frame takes on the wire.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        HEAD_BYTES + self.header.len() + self.body.len()
    }

    /// Appends the head and the header, not the body: a writer sends the body from its own
    /// buffer (vectored write), so large bodies are never copied.
    pub fn encode_head_and_header(&self, dst: &mut BytesMut) {
        // `new`/`text` enforce the limits, so the casts below cannot truncate.
        debug_assert!(check_lengths(self.header.len(), self.body.len()).is_ok());
        dst.reserve(HEAD_BYTES + self.header.len());
        dst.put_u16(MAGIC);
        dst.put_u8(self.kind as u8);
        dst.put_u8(0);
        dst.put_u32(u32::try_from(self.header.len()).unwrap_or(u32::MAX));
        dst.put_u32(u32::try_from(self.body.len()).unwrap_or(u32::MAX));
        dst.put_u64(self.id);
        dst.put_slice(&self.header);
    }

    /// Appends the whole frame (copies the body; for small frames and tests).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        self.encode_head_and_header(dst);
        dst.put_slice(&self.body);
    }

    /// The whole frame as one buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b);
        b.freeze()
    }
}

fn check_lengths(header_len: usize, body_len: usize) -> Result<(), FrameError> {
    if header_len > HEADER_MAX_BYTES {
        return Err(FrameError::HeaderTooLong {
            len: header_len,
            max: HEADER_MAX_BYTES,
        });
    }
    if body_len > BODY_MAX_BYTES {
        return Err(FrameError::BodyTooLong {
            len: body_len,
            max: BODY_MAX_BYTES,
        });
    }
    Ok(())
}

/// Parsed and validated head.
struct Head {
    kind: Kind,
    header_len: usize,
    body_len: usize,
    id: u64,
}

impl Head {
    /// Bytes of the whole frame, head included.
    fn total(&self) -> usize {
        HEAD_BYTES + self.header_len + self.body_len
    }
}

fn parse_head(mut h: &[u8]) -> Result<Head, FrameError> {
    debug_assert!(h.len() >= HEAD_BYTES);
    let magic = h.get_u16();
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let kind_byte = h.get_u8();
    let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
    let flags = h.get_u8();
    if flags != 0 {
        return Err(FrameError::BadFlags(flags));
    }
    // u32 → usize is lossless on the 32- and 64-bit targets metrofs runs on.
    let header_len = h.get_u32() as usize;
    let body_len = h.get_u32() as usize;
    check_lengths(header_len, body_len)?;
    let id = h.get_u64();
    Ok(Head {
        kind,
        header_len,
        body_len,
        id,
    })
}

/// A body at least this long is received at an address that is a multiple of [`BODY_ALIGN`]:
/// the receiver may hand it to `O_DIRECT` I/O as is (a twin writes large replicated writes
/// that way, without a copy into its page cache).
pub const ALIGNED_BODY_MIN_BYTES: usize = 64 * 1024;
/// Alignment of a large body in memory: a page, which any block device's `O_DIRECT` accepts.
pub const BODY_ALIGN: usize = 4096;
/// Most bytes of large-frame buffers a link keeps between uses: sixteen 1 MiB writes.
pub const POOL_IDLE_MAX_BYTES: usize = 17 * 1024 * 1024;

/// Takes one frame off the front of `src`, if it holds a whole one.
///
/// - `Ok(Some(frame))`: the frame's bytes are removed from `src`; header and body share its
///   allocation (no copy).
/// - `Ok(None)`: more bytes are needed; `src` is unchanged except that its capacity was grown
///   to hold the whole frame once the head is known (at most [`FRAME_MAX_BYTES`]).
/// - `Err(_)`: the bytes are not a valid frame; the stream cannot be resynchronised and must be
///   closed.
pub fn decode(src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    match take_frame(src)? {
        Next::Frame(f) => Ok(Some(f)),
        Next::Need(Some(head)) => {
            src.reserve(head.total() - src.len());
            Ok(None)
        }
        Next::Need(None) => Ok(None),
    }
}

/// What [`take_frame`] found at the front of a buffer.
enum Next {
    /// A whole frame, taken off the buffer.
    Frame(Frame),
    /// More bytes are needed; the head, once it is all in (and valid).
    Need(Option<Head>),
}

/// [`decode`] without growing `src`: the frame if it is all in, else its head if that is.
fn take_frame(src: &mut BytesMut) -> Result<Next, FrameError> {
    if src.len() < HEAD_BYTES {
        // Even a partial head can be wrong: fail early on a bad magic (a peer that is not
        // metrofs, e.g. an HTTP client) rather than wait for 20 bytes that may never come.
        if src.len() >= 2 {
            let found = u16::from_be_bytes([src[0], src[1]]);
            if found != MAGIC {
                return Err(FrameError::BadMagic { found });
            }
        }
        return Ok(Next::Need(None));
    }
    let head = parse_head(&src[..HEAD_BYTES])?;
    if src.len() < head.total() {
        return Ok(Next::Need(Some(head)));
    }
    src.advance(HEAD_BYTES);
    let header = src.split_to(head.header_len).freeze();
    let body = src.split_to(head.body_len).freeze();
    Ok(Next::Frame(Frame {
        kind: head.kind,
        id: head.id,
        header,
        body,
    }))
}

/// Like [`decode`], for when the stream has ended: leftover bytes that are not a whole frame
/// are a [`FrameError::Truncated`].
pub fn decode_eof(src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    match decode(src)? {
        Some(f) => Ok(Some(f)),
        None if src.is_empty() => Ok(None),
        None => {
            let need = if src.len() >= HEAD_BYTES {
                let head = parse_head(&src[..HEAD_BYTES])?;
                head.total()
            } else {
                HEAD_BYTES
            };
            Err(FrameError::Truncated {
                have: src.len(),
                need,
            })
        }
    }
}

/// Why a frame could not be read from a stream.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

/// Bytes read from the stream at a time when no frame length is known yet.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Reads the next frame from `r`, keeping leftover bytes in `buf` for the next call.
/// `Ok(None)` is a clean end of stream (between frames). `on_read` runs after every read that
/// returned bytes (the link counts any byte from the peer as a sign of life, so a large frame
/// on a slow network does not look like silence).
///
/// A frame whose body is [`ALIGNED_BODY_MIN_BYTES`] or more is read into a buffer from `pool`,
/// placed so that its body starts [`BODY_ALIGN`]-aligned, and only its own bytes are read into
/// it: header and body are views of that buffer, which goes back to the pool when both are
/// dropped. Smaller frames are views of `buf`.
pub(crate) async fn read_frame<R>(
    r: &mut R,
    buf: &mut BytesMut,
    pool: &BufPool,
    mut on_read: impl FnMut(),
) -> Result<Option<Frame>, ReadError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    loop {
        match take_frame(buf).map_err(ReadError::Frame)? {
            Next::Frame(f) => return Ok(Some(f)),
            Next::Need(Some(head)) if head.body_len >= ALIGNED_BODY_MIN_BYTES => {
                return read_large(r, buf, pool, &head, on_read).await.map(Some);
            }
            // Room for the whole (small) frame, once.
            Next::Need(Some(head)) => buf.reserve(head.total() - buf.len()),
            Next::Need(None) if buf.capacity() - buf.len() < 4096 => buf.reserve(READ_CHUNK_BYTES),
            Next::Need(None) => {}
        }
        let n = r.read_buf(buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return decode_eof(buf).map_err(ReadError::Frame);
        }
        on_read();
    }
}

/// The rest of the large frame whose start (and nothing more) `buf` holds, read into a buffer
/// from `pool` (see [`read_frame`]); `buf` is left empty.
async fn read_large<R>(
    r: &mut R,
    buf: &mut BytesMut,
    pool: &BufPool,
    head: &Head,
    mut on_read: impl FnMut(),
) -> Result<Frame, ReadError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let total = head.total();
    let body_at = HEAD_BYTES + head.header_len;
    let mut space = pool.take(total + BODY_ALIGN);
    let misalign = (space.as_ptr() as usize + body_at) % BODY_ALIGN;
    let start = (BODY_ALIGN - misalign) % BODY_ALIGN;
    let frame = &mut space[start..start + total];
    let mut filled = buf.len();
    frame[..filled].copy_from_slice(buf);
    buf.clear();
    while filled < total {
        let n = r.read(&mut frame[filled..]).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Frame(FrameError::Truncated {
                have: filled,
                need: total,
            }));
        }
        filled += n;
        on_read();
    }
    let whole = pool.lend(space, start..start + total);
    debug_assert!((whole.as_ptr() as usize + body_at).is_multiple_of(BODY_ALIGN));
    Ok(Frame {
        kind: head.kind,
        id: head.id,
        header: whole.slice(HEAD_BYTES..body_at),
        body: whole.slice(body_at..total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind_strategy() -> impl Strategy<Value = Kind> {
        proptest::sample::select(Kind::ALL.to_vec())
    }

    #[test]
    fn head_layout_is_as_documented() {
        let f = Frame::new(
            Kind::Request,
            0x0102_0304_0506_0708,
            Bytes::from_static(b"hd"),
            Bytes::from_static(b"body"),
        )
        .expect("small frame");
        let b = f.to_bytes();
        assert_eq!(
            &b[..HEAD_BYTES],
            &[0x4D, 0x4C, 4, 0, 0, 0, 0, 2, 0, 0, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(&b[HEAD_BYTES..], b"hdbody");
    }

    #[test]
    fn limits_are_enforced_on_both_ends() {
        let big = Bytes::from(vec![0u8; HEADER_MAX_BYTES + 1]);
        assert_eq!(
            Frame::new(Kind::Request, 1, big, Bytes::new()),
            Err(FrameError::HeaderTooLong {
                len: HEADER_MAX_BYTES + 1,
                max: HEADER_MAX_BYTES
            })
        );
        // A head announcing a 4 GiB body is refused before anything is reserved.
        let mut src = BytesMut::new();
        src.put_u16(MAGIC);
        src.put_u8(Kind::Request as u8);
        src.put_u8(0);
        src.put_u32(0);
        src.put_u32(u32::MAX);
        src.put_u64(7);
        let cap = src.capacity();
        assert!(matches!(
            decode(&mut src),
            Err(FrameError::BodyTooLong { .. })
        ));
        assert_eq!(src.capacity(), cap);
    }

    #[test]
    fn unknown_kind_and_flags_are_errors() {
        let mut b = BytesMut::from(&Frame::text(Kind::Close, 0, "bye").to_bytes()[..]);
        b[2] = 200;
        assert_eq!(decode(&mut b), Err(FrameError::UnknownKind(200)));
        let mut b = BytesMut::from(&Frame::text(Kind::Close, 0, "bye").to_bytes()[..]);
        b[3] = 1;
        assert_eq!(decode(&mut b), Err(FrameError::BadFlags(1)));
    }

    /// A stream that hands out at most `chunk` bytes per read, as a socket may.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl tokio::io::AsyncRead for Chunked {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self
                .chunk
                .min(out.remaining())
                .min(self.data.len() - self.at);
            out.put_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn patterned(kind: Kind, header_len: usize, body_len: usize) -> Frame {
        let body: Vec<u8> = (0..body_len).map(|i| (i % 251) as u8).collect();
        Frame::new(
            kind,
            9,
            Bytes::from(vec![7u8; header_len]),
            Bytes::from(body),
        )
        .expect("frame within limits")
    }

    /// Every frame `read_frame` finds in `wire`, read `chunk` bytes at a time.
    fn read_all(wire: Vec<u8>, chunk: usize, pool: &BufPool) -> Result<Vec<Frame>, ReadError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut r = Chunked {
                data: wire,
                at: 0,
                chunk,
            };
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            while let Some(f) = read_frame(&mut r, &mut buf, pool, || {}).await? {
                got.push(f);
            }
            Ok(got)
        })
    }

    #[test]
    fn a_large_body_is_received_page_aligned() {
        for body_len in [ALIGNED_BODY_MIN_BYTES - 1, ALIGNED_BODY_MIN_BYTES, 1 << 20] {
            for header_len in [0usize, 1, 37] {
                let f = patterned(Kind::Request, header_len, body_len);
                // As a stream brings it: a few KiB at a time, then the next frame.
                let mut wire = f.to_bytes().to_vec();
                wire.extend_from_slice(&Frame::text(Kind::Close, 0, "bye").to_bytes());
                let got =
                    read_all(wire, 5000, &BufPool::new(POOL_IDLE_MAX_BYTES)).expect("valid frames");
                assert_eq!(got.len(), 2, "body {body_len}, header {header_len}");
                assert_eq!(got[0], f);
                let aligned = (got[0].body().as_ptr() as usize).is_multiple_of(BODY_ALIGN);
                if body_len >= ALIGNED_BODY_MIN_BYTES {
                    assert!(
                        aligned,
                        "body of {body_len} bytes after a {header_len}-byte header"
                    );
                }
                assert_eq!(got[1].kind(), Kind::Close);
            }
        }
    }

    #[test]
    fn large_frames_mixed_with_small_ones_arrive_whole_and_in_order() {
        let mut frames = Vec::new();
        for i in 0..12usize {
            let body_len = [1 << 20, 100, ALIGNED_BODY_MIN_BYTES, 0][i % 4] + i;
            frames.push(patterned(Kind::Request, i * 3, body_len));
        }
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&f.to_bytes());
        }
        // Reads of any size: one byte, odd sizes, larger than a frame.
        for chunk in [1usize, 4093, 70_000, 4 << 20] {
            let pool = BufPool::new(POOL_IDLE_MAX_BYTES);
            let got = read_all(wire.clone(), chunk, &pool).expect("valid frames");
            assert_eq!(got, frames, "reads of {chunk} bytes");
            drop(got);
            assert!(pool.idle_bytes() > 0, "the large frames' buffers came back");
        }
    }

    #[test]
    fn a_large_frame_reuses_the_buffer_of_one_dropped_before() {
        let f = patterned(Kind::Response, 10, 1 << 20);
        let pool = BufPool::new(POOL_IDLE_MAX_BYTES);
        let first = read_all(f.to_bytes().to_vec(), 65_536, &pool).expect("valid");
        let at = first[0].body().as_ptr();
        drop(first);
        let second = read_all(f.to_bytes().to_vec(), 65_536, &pool).expect("valid");
        assert_eq!(second[0].body().as_ptr(), at);
        assert_eq!(second[0], f);
    }

    #[test]
    fn a_stream_that_ends_inside_a_large_frame_is_truncated() {
        let f = patterned(Kind::Request, 5, 1 << 20);
        let wire = f.to_bytes()[..300_000].to_vec();
        match read_all(wire, 65_536, &BufPool::new(POOL_IDLE_MAX_BYTES)) {
            Err(ReadError::Frame(e)) => assert_eq!(
                e,
                FrameError::Truncated {
                    have: 300_000,
                    need: f.encoded_len()
                }
            ),
            other => panic!("expected a truncated frame, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_detected_from_two_bytes() {
        let mut b = BytesMut::from(&b"GE"[..]);
        assert_eq!(decode(&mut b), Err(FrameError::BadMagic { found: 0x4745 }));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let f = Frame::new(
            Kind::Response,
            3,
            Bytes::from_static(b"h"),
            Bytes::from(vec![1u8; 100]),
        )
        .expect("small frame");
        let all = f.to_bytes();
        let mut b = BytesMut::from(&all[..50]);
        assert_eq!(
            decode_eof(&mut b),
            Err(FrameError::Truncated {
                have: 50,
                need: all.len()
            })
        );
        let mut b = BytesMut::from(&all[..5]);
        assert_eq!(
            decode_eof(&mut b),
            Err(FrameError::Truncated {
                have: 5,
                need: HEAD_BYTES
            })
        );
        let mut b = BytesMut::new();
        assert_eq!(decode_eof(&mut b), Ok(None));
    }

    #[test]
    fn decode_does_not_copy_the_body() {
        let f = Frame::new(Kind::Request, 9, Bytes::new(), Bytes::from(vec![7u8; 4096]))
            .expect("small frame");
        let mut src = BytesMut::from(&f.to_bytes()[..]);
        let start = src.as_ptr() as usize;
        let got = decode(&mut src).expect("valid").expect("whole");
        assert_eq!(got.body().as_ptr() as usize, start + HEAD_BYTES);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                    cut in 0usize..64) {
            let mut src = BytesMut::new();
            let (a, b) = data.split_at(cut.min(data.len()));
            for chunk in [a, b] {
                src.extend_from_slice(chunk);
                while let Ok(Some(f)) = decode(&mut src) {
                    prop_assert!(f.encoded_len() <= FRAME_MAX_BYTES);
                }
                prop_assert!(src.capacity() <= FRAME_MAX_BYTES + 8192);
            }
            let _ = decode_eof(&mut src);
        }

        #[test]
        fn random_heads_never_panic_nor_overallocate(
            magic in prop_oneof![Just(MAGIC), any::<u16>()],
            kind in any::<u8>(), flags in prop_oneof![Just(0u8), any::<u8>()],
            hlen in any::<u32>(), blen in any::<u32>(), id in any::<u64>(),
            tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut src = BytesMut::new();
            src.put_u16(magic);
            src.put_u8(kind);
            src.put_u8(flags);
            src.put_u32(hlen);
            src.put_u32(blen);
            src.put_u64(id);
            src.extend_from_slice(&tail);
            match decode(&mut src) {
                Ok(Some(f)) => prop_assert_eq!(f.id(), id),
                Ok(None) => prop_assert!(src.capacity() <= FRAME_MAX_BYTES + 8192),
                Err(_) => {}
            }
        }

        #[test]
        fn encode_decode_round_trip(
            frames in proptest::collection::vec(
                (kind_strategy(), any::<u64>(),
                 proptest::collection::vec(any::<u8>(), 0..300),
                 proptest::collection::vec(any::<u8>(), 0..3000)), 1..8),
            split in any::<proptest::sample::Index>()) {
            let frames: Vec<Frame> = frames.into_iter()
                .map(|(k, id, h, b)| Frame::new(k, id, Bytes::from(h), Bytes::from(b)).expect("within limits"))
                .collect();
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            // Feed the stream in two pieces, cut anywhere.
            let at = split.index(wire.len() + 1);
            let mut src = BytesMut::new();
            let mut got = Vec::new();
            for piece in [&wire[..at], &wire[at..]] {
                src.extend_from_slice(piece);
                while let Some(f) = decode(&mut src).expect("valid stream") {
                    got.push(f);
                }
            }
            prop_assert_eq!(decode_eof(&mut src), Ok(None));
            prop_assert_eq!(got, frames);
        }
    }
}
