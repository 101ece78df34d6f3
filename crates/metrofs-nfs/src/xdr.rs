//! XDR decoding of call arguments, and packing of replies.
//!
//! Replies are packed with `nfs3_types`' codec ([`put`]). Arguments are decoded here, not with
//! `nfs3_types::Unpack`, for two reasons:
//! - its `Opaque::unpack` allocates the length the peer announces before it checks that the
//!   bytes are there (a 4 GiB name from a 40-byte record); here every length is checked against
//!   what is left of the record and against the protocol's limit first;
//! - WRITE's data must stay a [`Bytes`] slice of the received record, never a fresh copy
//!   ([`Dec::opaque`] returns such a slice).
//!
//! A decoding failure is [`Garbage`]: the caller answers GARBAGE_ARGS (or drops the record when
//! not even the RPC header decodes).

use bytes::{BufMut, Bytes, BytesMut};
use nfs3_types::xdr_codec::Pack;

/// The arguments do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garbage;

impl std::fmt::Display for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("arguments do not decode")
    }
}

/// A cursor over one received record.
#[derive(Debug, Clone)]
pub struct Dec {
    buf: Bytes,
    pos: usize,
}

/// XDR pads every opaque to a multiple of 4 bytes.
#[must_use]
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl Dec {
    #[must_use]
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet decoded.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Everything not yet decoded, without consuming it.
    #[must_use]
    pub fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Garbage> {
        if n > self.remaining() {
            return Err(Garbage);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32(&mut self) -> Result<u32, Garbage> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }

    pub fn u64(&mut self) -> Result<u64, Garbage> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// XDR bool: exactly 0 or 1.
    pub fn bool(&mut self) -> Result<bool, Garbage> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Garbage),
        }
    }

    /// Fixed-length opaque of `N` bytes (a multiple of 4 in every use here).
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Garbage> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        let pad = padded(N) - N;
        self.take(pad)?;
        Ok(a)
    }

    /// Variable-length opaque of at most `max` bytes, as a slice of the record (no copy).
    /// The length is checked against `max` and against what is left before anything else.
    pub fn opaque(&mut self, max: usize) -> Result<Bytes, Garbage> {
        let len = self.u32()? as usize;
        if len > max || padded(len) > self.remaining() {
            return Err(Garbage);
        }
        let data = self.buf.slice(self.pos..self.pos + len);
        self.pos += padded(len);
        Ok(data)
    }

    /// A counted array of u32 of at most `max` elements.
    pub fn u32_array(&mut self, max: usize) -> Result<Vec<u32>, Garbage> {
        let n = self.u32()? as usize;
        if n > max || n.saturating_mul(4) > self.remaining() {
            return Err(Garbage);
        }
        (0..n).map(|_| self.u32()).collect()
    }
}

/// A reply could not be packed (only possible for an opaque over 4 GiB: a bug here).
#[derive(Debug)]
pub struct EncodeError(pub String);

impl From<nfs3_types::xdr_codec::Error> for EncodeError {
    fn from(e: nfs3_types::xdr_codec::Error) -> Self {
        Self(e.to_string())
    }
}

/// Appends `v`, XDR-encoded with `nfs3_types`, to `out`.
pub fn put<T: Pack>(out: &mut BytesMut, v: &T) -> Result<(), EncodeError> {
    out.reserve(v.packed_size());
    let mut w = out.writer();
    v.pack(&mut w)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8]) -> Dec {
        Dec::new(Bytes::copy_from_slice(b))
    }

    #[test]
    fn integers_and_bools() {
        let mut d = dec(&[0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(d.u32(), Ok(7));
        assert_eq!(d.u64(), Ok(256));
        assert_eq!(d.bool(), Ok(true));
        assert_eq!(d.bool(), Err(Garbage), "2 is not a bool");
        assert_eq!(d.u32(), Err(Garbage), "nothing left");
    }

    #[test]
    fn opaque_is_a_slice_and_padded() {
        let rec = Bytes::from_static(&[
            0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0, 0, 0, 0, 9,
        ]);
        let mut d = Dec::new(rec.clone());
        let o = d.opaque(16).expect("opaque");
        assert_eq!(&o[..], b"hello");
        // Same memory as the record: no copy.
        assert_eq!(o.as_ptr(), rec[4..].as_ptr());
        assert_eq!(d.u32(), Ok(9));
    }

    #[test]
    fn opaque_lengths_are_checked_before_anything_is_allocated() {
        // Announces 4 GiB - 1 bytes in an 8-byte record.
        let mut d = dec(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(d.opaque(usize::MAX), Err(Garbage));
        // Over the protocol's limit though present.
        let mut d = dec(&[0, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(d.opaque(3), Err(Garbage));
        // Padding missing.
        let mut d = dec(&[0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(d.opaque(8), Err(Garbage));
    }

    #[test]
    fn u32_arrays_are_bounded() {
        let mut d = dec(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(d.u32_array(16), Ok(vec![1, 2]));
        let mut d = dec(&[0, 0, 0, 17]);
        assert_eq!(d.u32_array(16), Err(Garbage));
        let mut d = dec(&[0x40, 0, 0, 0]);
        assert_eq!(
            d.u32_array(usize::MAX),
            Err(Garbage),
            "a billion elements announced, none present"
        );
    }

    #[test]
    fn fixed_arrays() {
        let mut d = dec(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(d.fixed::<8>(), Ok([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(d.fixed::<8>(), Err(Garbage));
    }

    #[test]
    fn put_packs_with_nfs3_types() {
        let mut out = BytesMut::new();
        put(&mut out, &7u32).expect("pack");
        put(&mut out, &nfs3_types::xdr_codec::Opaque::borrowed(b"ab")).expect("pack");
        assert_eq!(&out[..], &[0, 0, 0, 7, 0, 0, 0, 2, b'a', b'b', 0, 0]);
    }
}
