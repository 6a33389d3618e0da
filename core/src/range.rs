//! Byte ranges as protocols speak them (offset, length; length 0 = to end of file) and as the table keeps
//! them (an inclusive span `start..=end`, so "to end of file" needs no special case).

use core::fmt;

/// A byte range as a protocol names it. `length == 0` means "from `offset` to the end of the file",
/// i.e. up to the largest offset the configuration accepts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Range {
    /// The first byte.
    pub offset: u64,
    /// How many bytes; 0 = to the end of the file.
    pub length: u64,
}

impl Range {
    /// `length` bytes from `offset`; `length` 0 = to the end of the file.
    pub const fn new(offset: u64, length: u64) -> Self {
        Self { offset, length }
    }

    /// The whole file.
    pub const fn whole() -> Self {
        Self {
            offset: 0,
            length: 0,
        }
    }

    /// The inclusive span this range covers, or `None` when it reaches past `max_offset`
    /// (XNFS: NLM4_FBIG when offset + len overflows; Linux: EOVERFLOW past OFFSET_MAX).
    pub fn span(self, max_offset: u64) -> Option<Span> {
        if self.offset > max_offset {
            return None;
        }
        let end = if self.length == 0 {
            max_offset
        } else {
            self.offset.checked_add(self.length - 1)?
        };
        (end <= max_offset).then_some(Span {
            start: self.offset,
            end,
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.length == 0 {
            write!(f, "[{}..EOF]", self.offset)
        } else {
            write!(f, "[{}+{}]", self.offset, self.length)
        }
    }
}

/// An inclusive, non-empty span of bytes: `start <= end`. How the core keeps ranges; hosts meet it
/// only through [`Range::span`] and [`Span::to_range`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Span {
    /// The first byte.
    pub start: u64,
    /// The last byte (included).
    pub end: u64,
}

impl Span {
    /// The bytes `start..=end`; `start` must not be past `end` (checked in debug builds only).
    pub const fn new(start: u64, end: u64) -> Self {
        debug_assert!(start <= end);
        Self { start, end }
    }

    /// Whether the two spans share at least one byte.
    pub const fn overlaps(self, other: Span) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Overlapping or adjacent: two same-kind locks of one owner that touch are merged.
    pub const fn touches(self, other: Span) -> bool {
        self.start <= other.end.saturating_add(1) && other.start <= self.end.saturating_add(1)
    }

    /// Whether every byte of `other` is in `self`.
    pub const fn contains(self, other: Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// The bytes in both, if any.
    pub fn intersection(self, other: Span) -> Option<Span> {
        self.overlaps(other)
            .then(|| Span::new(self.start.max(other.start), self.end.min(other.end)))
    }

    /// Back to the protocol's form: a span that reaches `max_offset` is reported as "to end of file".
    pub fn to_range(self, max_offset: u64) -> Range {
        let length = if self.end >= max_offset {
            0
        } else {
            self.end - self.start + 1
        };
        Range {
            offset: self.start,
            length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_zero_reaches_the_largest_offset() {
        assert_eq!(
            Range::new(10, 0).span(u64::MAX),
            Some(Span::new(10, u64::MAX))
        );
        assert_eq!(
            Range::new(10, 0).span(i64::MAX as u64),
            Some(Span::new(10, i64::MAX as u64))
        );
    }

    #[test]
    fn a_range_whose_end_overflows_is_too_big() {
        assert_eq!(Range::new(u64::MAX, 2).span(u64::MAX), None);
        assert_eq!(Range::new(2, u64::MAX).span(u64::MAX), None);
        assert_eq!(
            Range::new(1, u64::MAX).span(u64::MAX),
            Some(Span::new(1, u64::MAX))
        );
        assert_eq!(
            Range::new(0, u64::MAX).span(u64::MAX),
            Some(Span::new(0, u64::MAX - 1))
        );
        assert_eq!(
            Range::new(u64::MAX, 1).span(u64::MAX),
            Some(Span::new(u64::MAX, u64::MAX))
        );
    }

    #[test]
    fn a_range_past_the_configured_maximum_is_too_big() {
        let max = i64::MAX as u64;
        assert_eq!(Range::new(max, 2).span(max), None);
        assert_eq!(Range::new(max + 1, 0).span(max), None);
        assert_eq!(Range::new(max, 1).span(max), Some(Span::new(max, max)));
    }

    #[test]
    fn spans_report_back_as_ranges() {
        assert_eq!(Span::new(5, 9).to_range(u64::MAX), Range::new(5, 5));
        assert_eq!(Span::new(5, u64::MAX).to_range(u64::MAX), Range::new(5, 0));
        assert_eq!(Span::new(0, u64::MAX).to_range(u64::MAX), Range::new(0, 0));
    }

    #[test]
    fn touching_includes_adjacent_spans() {
        assert!(Span::new(0, 9).touches(Span::new(10, 12)));
        assert!(!Span::new(0, 9).overlaps(Span::new(10, 12)));
        assert!(!Span::new(0, 9).touches(Span::new(11, 12)));
        assert!(Span::new(0, u64::MAX).touches(Span::new(u64::MAX, u64::MAX)));
    }
}
