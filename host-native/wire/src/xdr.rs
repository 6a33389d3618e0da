//! RFC 4506 XDR: the big-endian, 4-byte-aligned encoding under ONC RPC, NLM, NSM and portmap.
//!
//! [`XdrWriter`] appends to a caller's `Vec<u8>`; [`XdrReader`] walks a byte slice.
//! The reader never panics and never trusts a length it has not checked against both a
//! maximum and the bytes that are actually there.
//!
//! Choices the RFC leaves open:
//! - **Padding bytes are not checked.** RFC 4506 §3 says they are zero, but Linux sunrpc and
//!   libtirpc skip them without looking, so a strict reader would refuse peers those accept.
//!   The reader does require the padding to be *present* (a missing pad is `Truncated`).
//! - **Strings stay bytes.** NLM `caller_name` and NSM `mon_name` are host names that some
//!   clients send in non-UTF-8 encodings; the codec hands them over as `&[u8]` and leaves
//!   interpretation to the caller.
//! - **Booleans are 0 or 1 only**; anything else is [`XdrError::BadBool`], as in libtirpc.

use std::fmt;

/// Why a value could not be decoded (or, for the length checks, encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdrError {
    /// The input ended before the value (or its padding) did.
    Truncated,
    /// A variable-length item is longer than its declared maximum.
    TooLong { max: u32, len: u64 },
    /// A `bool` was neither 0 nor 1.
    BadBool(u32),
    /// An enum discriminant that the type does not define.
    BadEnum(u32),
    /// Bytes were left over after the complete value.
    TrailingBytes(usize),
}

impl fmt::Display for XdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdrError::Truncated => write!(f, "XDR input truncated"),
            XdrError::TooLong { max, len } => {
                write!(f, "XDR item of {len} bytes exceeds its maximum of {max}")
            }
            XdrError::BadBool(v) => write!(f, "XDR bool has value {v}"),
            XdrError::BadEnum(v) => write!(f, "XDR enum has undefined value {v}"),
            XdrError::TrailingBytes(n) => write!(f, "{n} trailing bytes after XDR value"),
        }
    }
}

impl std::error::Error for XdrError {}

/// Bytes of zero padding that bring `len` up to a multiple of four.
fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Appends XDR-encoded values to a borrowed buffer, so a server can reuse one buffer per
/// connection.
#[derive(Debug)]
pub struct XdrWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> XdrWriter<'a> {
    /// A writer that appends after whatever `out` already holds.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        XdrWriter { out }
    }

    /// Bytes in the underlying buffer, including those that were there before this writer.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether the underlying buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn put_u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// XDR `unsigned hyper`.
    pub fn put_u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// XDR `hyper`.
    pub fn put_i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_bool(&mut self, v: bool) {
        self.put_u32(u32::from(v));
    }

    /// An enum discriminant (XDR enums are signed ints; every enum here is non-negative).
    pub fn put_enum(&mut self, v: u32) {
        self.put_u32(v);
    }

    /// Fixed-length `opaque[n]`: the bytes and their padding, no length word.
    pub fn put_opaque_fixed(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.put_padding(bytes.len());
    }

    /// Variable-length `opaque<max>` (a `netobj` in NLM): length word, bytes, padding.
    /// Refuses to write what a conforming reader with the same `max` would refuse to read.
    pub fn put_opaque(&mut self, bytes: &[u8], max: u32) -> Result<(), XdrError> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|&len| len <= max)
            .ok_or(XdrError::TooLong {
                max,
                len: bytes.len() as u64,
            })?;
        self.put_u32(len);
        self.put_opaque_fixed(bytes);
        Ok(())
    }

    /// `string<max>`: the same wire form as `opaque<max>`.
    pub fn put_string(&mut self, bytes: &[u8], max: u32) -> Result<(), XdrError> {
        self.put_opaque(bytes, max)
    }

    /// Already-encoded XDR (procedure arguments or results), copied as is.
    pub fn put_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn put_padding(&mut self, len: usize) {
        self.out.extend_from_slice(&[0u8; 3][..pad_len(len)]);
    }
}

/// Reads XDR values from a byte slice, front to back.
#[derive(Clone, Debug)]
pub struct XdrReader<'a> {
    rest: &'a [u8],
}

impl<'a> XdrReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        XdrReader { rest: bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Takes every byte not yet read (e.g. procedure arguments after an RPC header).
    pub fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Ends decoding: an error if any byte is left over.
    pub fn finish(self) -> Result<(), XdrError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(XdrError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        if n > self.rest.len() {
            return Err(XdrError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn get_u32(&mut self) -> Result<u32, XdrError> {
        self.take_array().map(u32::from_be_bytes)
    }

    pub fn get_i32(&mut self) -> Result<i32, XdrError> {
        self.take_array().map(i32::from_be_bytes)
    }

    /// XDR `unsigned hyper`.
    pub fn get_u64(&mut self) -> Result<u64, XdrError> {
        self.take_array().map(u64::from_be_bytes)
    }

    /// XDR `hyper`.
    pub fn get_i64(&mut self) -> Result<i64, XdrError> {
        self.take_array().map(i64::from_be_bytes)
    }

    pub fn get_bool(&mut self) -> Result<bool, XdrError> {
        match self.get_u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::BadBool(v)),
        }
    }

    /// An enum discriminant mapped through `from_wire`; `None` becomes [`XdrError::BadEnum`].
    pub fn get_enum<T>(&mut self, from_wire: impl FnOnce(u32) -> Option<T>) -> Result<T, XdrError> {
        let v = self.get_u32()?;
        from_wire(v).ok_or(XdrError::BadEnum(v))
    }

    /// Fixed-length `opaque[n]`; the padding must be present but is not checked for zeros.
    pub fn get_opaque_fixed(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let padded = n.checked_add(pad_len(n)).ok_or(XdrError::Truncated)?;
        let bytes = self.take(padded)?;
        Ok(&bytes[..n])
    }

    /// `opaque[N]` into an array (NSM's 16-byte `priv`).
    pub fn get_opaque_array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.get_opaque_fixed(N)?);
        Ok(out)
    }

    /// Variable-length `opaque<max>`. The length is checked against `max` before anything
    /// is read, so a huge length word costs nothing.
    pub fn get_opaque(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        let len = self.get_u32()?;
        if len > max {
            return Err(XdrError::TooLong {
                max,
                len: u64::from(len),
            });
        }
        let len = usize::try_from(len).map_err(|_| XdrError::Truncated)?;
        self.get_opaque_fixed(len)
    }

    /// `string<max>`, as raw bytes (see the module doc).
    pub fn get_string(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        self.get_opaque(max)
    }
}

/// A type with one XDR form, independent of any protocol version (NSM, portmap, RPC auth).
pub trait XdrCodec: Sized {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError>;
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError>;
}

/// Decodes exactly one `T` from `bytes`: trailing bytes are an error.
pub fn decode_exact<T: XdrCodec>(bytes: &[u8]) -> Result<T, XdrError> {
    let mut r = XdrReader::new(bytes);
    let v = T::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Encodes `value` at the end of `out`. On error `out` is left as it was.
pub fn encode_into<T: XdrCodec>(value: &T, out: &mut Vec<u8>) -> Result<(), XdrError> {
    let start = out.len();
    let result = value.encode(&mut XdrWriter::new(out));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `value` into a fresh buffer.
pub fn encode_to_vec<T: XdrCodec>(value: &T) -> Result<Vec<u8>, XdrError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

impl XdrCodec for u32 {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_u32(*self);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_u32()
    }
}

impl XdrCodec for bool {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_bool(*self);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_bool()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn written(f: impl FnOnce(&mut XdrWriter<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut XdrWriter::new(&mut out));
        out
    }

    #[test]
    fn integers_are_big_endian() {
        let out = written(|w| {
            w.put_u32(0x0102_0304);
            w.put_i32(-2);
            w.put_u64(0x0102_0304_0506_0708);
            w.put_i64(-1);
        });
        assert_eq!(
            out,
            [
                1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff
            ]
        );
        let mut r = XdrReader::new(&out);
        assert_eq!(r.get_u32(), Ok(0x0102_0304));
        assert_eq!(r.get_i32(), Ok(-2));
        assert_eq!(r.get_u64(), Ok(0x0102_0304_0506_0708));
        assert_eq!(r.get_i64(), Ok(-1));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn opaque_is_length_bytes_and_zero_padding() {
        let out = written(|w| w.put_opaque(b"abcde", 8).unwrap());
        assert_eq!(out, [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
        assert_eq!(XdrReader::new(&out).get_opaque(8), Ok(&b"abcde"[..]));
    }

    #[test]
    fn aligned_opaque_has_no_padding() {
        let out = written(|w| w.put_opaque(b"abcd", 4).unwrap());
        assert_eq!(out, [0, 0, 0, 4, b'a', b'b', b'c', b'd']);
    }

    #[test]
    fn missing_padding_is_truncated() {
        let bytes = [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0];
        assert_eq!(
            XdrReader::new(&bytes).get_opaque(8),
            Err(XdrError::Truncated)
        );
    }

    #[test]
    fn non_zero_padding_is_tolerated() {
        let bytes = [0, 0, 0, 1, b'a', 9, 9, 9];
        let mut r = XdrReader::new(&bytes);
        assert_eq!(r.get_opaque(4), Ok(&b"a"[..]));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn over_long_opaque_is_refused_both_ways() {
        let bytes = [0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(
            XdrReader::new(&bytes).get_opaque(4),
            Err(XdrError::TooLong { max: 4, len: 5 })
        );
        let mut out = Vec::new();
        assert_eq!(
            XdrWriter::new(&mut out).put_opaque(&[0; 5], 4),
            Err(XdrError::TooLong { max: 4, len: 5 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn huge_length_word_is_refused_without_reading() {
        let bytes = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            XdrReader::new(&bytes).get_opaque(u32::MAX),
            Err(XdrError::Truncated)
        );
        assert_eq!(
            XdrReader::new(&bytes).get_string(1024),
            Err(XdrError::TooLong {
                max: 1024,
                len: u64::from(u32::MAX)
            })
        );
    }

    #[test]
    fn bool_other_than_zero_or_one_is_refused() {
        assert_eq!(
            XdrReader::new(&[0, 0, 0, 2]).get_bool(),
            Err(XdrError::BadBool(2))
        );
        assert_eq!(XdrReader::new(&[0, 0, 0, 1]).get_bool(), Ok(true));
    }

    #[test]
    fn undefined_enum_is_refused() {
        let r = XdrReader::new(&[0, 0, 0, 7]).get_enum(|v| (v < 3).then_some(v));
        assert_eq!(r, Err(XdrError::BadEnum(7)));
    }

    #[test]
    fn truncated_integers() {
        assert_eq!(
            XdrReader::new(&[0, 0, 0]).get_u32(),
            Err(XdrError::Truncated)
        );
        assert_eq!(XdrReader::new(&[0; 7]).get_u64(), Err(XdrError::Truncated));
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let bytes = [0, 0, 0, 1, 0, 0];
        let mut r = XdrReader::new(&bytes);
        r.get_u32().unwrap();
        assert_eq!(r.finish(), Err(XdrError::TrailingBytes(2)));
    }

    quickcheck! {
        fn opaque_round_trips(bytes: Vec<u8>, tail: u32) -> bool {
            let mut out = Vec::new();
            let mut w = XdrWriter::new(&mut out);
            w.put_opaque(&bytes, 1024).unwrap();
            w.put_u32(tail);
            let mut r = XdrReader::new(&out);
            out.len().is_multiple_of(4)
                && r.get_opaque(1024) == Ok(&bytes[..])
                && r.get_u32() == Ok(tail)
                && r.finish().is_ok()
        }

        fn reading_arbitrary_bytes_never_panics(bytes: Vec<u8>, max: u32) -> bool {
            let mut r = XdrReader::new(&bytes);
            let _ = r.get_opaque(max);
            let _ = r.get_bool();
            let _ = r.get_u64();
            let _ = r.get_opaque_array::<16>();
            true
        }
    }
}
