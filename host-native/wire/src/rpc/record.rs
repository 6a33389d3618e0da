//! Record marking for ONC RPC over TCP (RFC 5531 §11).
//!
//! A record is one or more fragments; each fragment starts with a 4-byte big-endian word
//! whose top bit marks the last fragment and whose low 31 bits give the fragment's length.
//! [`RecordDecoder`] takes bytes in whatever chunks the socket delivers and yields whole
//! records; [`encode_record`] frames one.

use std::collections::VecDeque;
use std::fmt;

/// Largest record a server accepts unless configured otherwise: far above any NLM message
/// (a few KiB at most), small enough that a hostile length word cannot exhaust memory.
pub const DEFAULT_MAX_RECORD: usize = 1 << 20;

const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Largest fragment the 31-bit length field can describe.
pub const MAX_FRAGMENT: usize = 0x7fff_ffff;

/// The stream cannot be decoded further; the connection should be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The record being assembled would exceed the decoder's maximum.
    TooLarge { max: usize, len: u64 },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooLarge { max, len } => {
                write!(
                    f,
                    "RPC record of at least {len} bytes exceeds the maximum of {max}"
                )
            }
        }
    }
}

impl std::error::Error for RecordError {}

#[derive(Debug)]
enum State {
    /// Collecting the 4-byte fragment header; `have` bytes so far.
    Header { word: [u8; 4], have: usize },
    /// Copying the fragment body; `left` bytes still to come.
    Body { left: usize, last: bool },
    /// A limit was exceeded; everything after is ignored.
    Failed(RecordError),
}

/// Streaming record-marking decoder for one TCP connection.
///
/// ```
/// use brlock_wire::rpc::record::{RecordDecoder, encode_record};
/// let mut wire = Vec::new();
/// encode_record(b"abcd", &mut wire);
/// let mut decoder = RecordDecoder::new();
/// decoder.push(&wire[..3]).unwrap();
/// assert_eq!(decoder.next_record(), None);
/// decoder.push(&wire[3..]).unwrap();
/// assert_eq!(decoder.next_record(), Some(b"abcd".to_vec()));
/// ```
#[derive(Debug)]
pub struct RecordDecoder {
    max_record: usize,
    state: State,
    /// The record being assembled from its fragments.
    partial: Vec<u8>,
    complete: VecDeque<Vec<u8>>,
}

impl Default for RecordDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordDecoder {
    /// A decoder that accepts records up to [`DEFAULT_MAX_RECORD`] bytes.
    pub fn new() -> Self {
        Self::with_max_record(DEFAULT_MAX_RECORD)
    }

    /// A decoder that accepts records up to `max_record` bytes (the sum of their fragments).
    pub fn with_max_record(max_record: usize) -> Self {
        RecordDecoder {
            max_record,
            state: State::Header {
                word: [0; 4],
                have: 0,
            },
            partial: Vec::new(),
            complete: VecDeque::new(),
        }
    }

    /// Feeds bytes as they arrive. Records completed by them become available from
    /// [`next_record`](Self::next_record), including those completed before an error.
    ///
    /// An error is final: the rest of the stream cannot be framed, so the caller should
    /// close the connection after answering the records already complete. Every later call
    /// returns the same error.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), RecordError> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                State::Header { word, have } => {
                    let n = (4 - *have).min(bytes.len());
                    word[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 4 {
                        let header = u32::from_be_bytes(*word);
                        self.start_fragment(header)?;
                    }
                }
                State::Body { left, last } => {
                    let n = (*left).min(bytes.len());
                    self.partial.extend_from_slice(&bytes[..n]);
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        let last = *last;
                        self.end_fragment(last);
                    }
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The oldest complete record not yet taken.
    pub fn next_record(&mut self) -> Option<Vec<u8>> {
        self.complete.pop_front()
    }

    /// Bytes of the record being assembled (what a stalled sender makes the decoder hold).
    pub fn partial_len(&self) -> usize {
        self.partial.len()
    }

    /// Whether a record has been started but not finished (useful to tell a clean EOF from a
    /// connection cut mid-record).
    pub fn is_mid_record(&self) -> bool {
        !self.partial.is_empty()
            || !matches!(self.state, State::Header { have: 0, .. } | State::Failed(_))
    }

    fn start_fragment(&mut self, header: u32) -> Result<(), RecordError> {
        let last = header & LAST_FRAGMENT != 0;
        let len = (header & !LAST_FRAGMENT) as usize;
        let total = self.partial.len().checked_add(len);
        match total {
            Some(total) if total <= self.max_record => {}
            _ => {
                let e = RecordError::TooLarge {
                    max: self.max_record,
                    len: self.partial.len() as u64 + u64::from(header & !LAST_FRAGMENT),
                };
                self.partial = Vec::new();
                self.state = State::Failed(e);
                return Err(e);
            }
        }
        if len == 0 {
            self.end_fragment(last);
        } else {
            self.state = State::Body { left: len, last };
        }
        Ok(())
    }

    fn end_fragment(&mut self, last: bool) {
        if last {
            self.complete.push_back(std::mem::take(&mut self.partial));
        }
        self.state = State::Header {
            word: [0; 4],
            have: 0,
        };
    }
}

/// Frames `record` as a single fragment (or several if it exceeds the 31-bit length field)
/// and appends it to `out`.
pub fn encode_record(record: &[u8], out: &mut Vec<u8>) {
    encode_record_fragmented(record, MAX_FRAGMENT, out);
}

/// Frames `record` in fragments of at most `max_fragment` bytes (clamped to 1..=2³¹−1).
/// An empty record is one empty last fragment. Servers need only [`encode_record`]; this
/// exists so tests can produce the multi-fragment records that clients may send.
pub fn encode_record_fragmented(record: &[u8], max_fragment: usize, out: &mut Vec<u8>) {
    let max_fragment = max_fragment.clamp(1, MAX_FRAGMENT);
    let mut chunks = record.chunks(max_fragment).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&LAST_FRAGMENT.to_be_bytes());
        return;
    }
    while let Some(chunk) = chunks.next() {
        // chunk.len() <= MAX_FRAGMENT, so it fits the 31-bit field.
        let mut header = chunk.len() as u32;
        if chunks.peek().is_none() {
            header |= LAST_FRAGMENT;
        }
        out.extend_from_slice(&header.to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn decode_all(decoder: &mut RecordDecoder) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| decoder.next_record()).collect()
    }

    #[test]
    fn single_fragment_record() {
        let mut wire = Vec::new();
        encode_record(b"hello", &mut wire);
        assert_eq!(wire, [0x80, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        let mut d = RecordDecoder::new();
        d.push(&wire).unwrap();
        assert_eq!(decode_all(&mut d), [b"hello".to_vec()]);
        assert!(!d.is_mid_record());
    }

    #[test]
    fn multi_fragment_record_split_across_chunks() {
        let mut wire = Vec::new();
        encode_record_fragmented(b"abcdefghij", 3, &mut wire);
        // Four fragments: 3 + 3 + 3 + 1 bytes, only the last marked.
        assert_eq!(&wire[..4], [0, 0, 0, 3]);
        assert_eq!(&wire[wire.len() - 5..wire.len() - 1], [0x80, 0, 0, 1]);
        let mut d = RecordDecoder::new();
        for byte in &wire {
            d.push(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(decode_all(&mut d), [b"abcdefghij".to_vec()]);
    }

    #[test]
    fn two_records_in_one_chunk() {
        let mut wire = Vec::new();
        encode_record(b"one", &mut wire);
        encode_record(b"", &mut wire);
        encode_record(b"three", &mut wire);
        let mut d = RecordDecoder::new();
        d.push(&wire).unwrap();
        assert_eq!(
            decode_all(&mut d),
            [b"one".to_vec(), Vec::new(), b"three".to_vec()]
        );
    }

    #[test]
    fn partial_record_is_held_back() {
        let mut wire = Vec::new();
        encode_record(b"abcdef", &mut wire);
        let mut d = RecordDecoder::new();
        d.push(&wire[..6]).unwrap();
        assert_eq!(d.next_record(), None);
        assert!(d.is_mid_record());
    }

    #[test]
    fn oversized_fragment_header_fails_at_once() {
        let mut d = RecordDecoder::with_max_record(100);
        // Header only: the decoder must refuse before any body byte arrives.
        assert_eq!(
            d.push(&[0x80, 0, 0, 101]),
            Err(RecordError::TooLarge { max: 100, len: 101 })
        );
        // The error is sticky.
        assert!(d.push(&[0x80, 0, 0, 1, 0]).is_err());
    }

    #[test]
    fn oversized_record_across_fragments_fails() {
        let mut wire = Vec::new();
        encode_record_fragmented(&[7; 120], 60, &mut wire);
        let mut d = RecordDecoder::with_max_record(100);
        assert_eq!(
            d.push(&wire),
            Err(RecordError::TooLarge { max: 100, len: 120 })
        );
        assert_eq!(d.next_record(), None);
    }

    #[test]
    fn records_before_the_error_survive() {
        let mut wire = Vec::new();
        encode_record(b"ok", &mut wire);
        wire.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let mut d = RecordDecoder::new();
        assert!(d.push(&wire).is_err());
        assert_eq!(d.next_record(), Some(b"ok".to_vec()));
    }

    #[test]
    fn record_at_exactly_the_maximum_is_accepted() {
        let mut wire = Vec::new();
        encode_record_fragmented(&[1; 100], 30, &mut wire);
        let mut d = RecordDecoder::with_max_record(100);
        d.push(&wire).unwrap();
        assert_eq!(d.next_record(), Some(vec![1; 100]));
    }

    quickcheck! {
        fn fragmented_records_round_trip_in_any_chunking(
            records: Vec<Vec<u8>>, fragment: u8, chunk: u8
        ) -> bool {
            let mut wire = Vec::new();
            for r in &records {
                encode_record_fragmented(r, usize::from(fragment), &mut wire);
            }
            let mut d = RecordDecoder::new();
            for c in wire.chunks(usize::from(chunk).max(1)) {
                d.push(c).unwrap();
            }
            decode_all(&mut d) == records && !d.is_mid_record()
        }

        fn arbitrary_bytes_never_panic(chunks: Vec<Vec<u8>>, max: u16) -> bool {
            let mut d = RecordDecoder::with_max_record(usize::from(max));
            for c in &chunks {
                let _ = d.push(c);
                while let Some(r) = d.next_record() {
                    if r.len() > usize::from(max) {
                        return false;
                    }
                }
            }
            true
        }
    }
}
