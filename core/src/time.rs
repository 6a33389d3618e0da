//! Time as the host hands it in: moments ([`Instant`]) and spans ([`Duration`]), both whole
//! milliseconds. The core never reads a clock; the host picks a monotonic clock and an origin (brlockd
//! counts from its start), and only differences between its moments matter.
//!
//! Two types rather than one `u64` so that mixing them up fails to compile, as with quinn-proto's
//! `Instant`/`Duration`: a moment plus a span is a moment, a moment minus a moment is a span, and a
//! moment plus a moment means nothing. Every operation saturates, so a moment near `u64::MAX` or a
//! span of `u64::MAX` (a host's "forever") cannot wrap or panic. Both serialise as the plain number of
//! milliseconds, so traces, snapshots and configuration files name them as numbers.

use core::ops::{Add, AddAssign, Mul, Sub, SubAssign};

/// A moment on the host's monotonic clock, in milliseconds from an origin the host chooses.
///
/// ```
/// use brlock_core::{Duration, Instant};
/// let start = Instant::from_millis(1_000);
/// let later = start + Duration::from_secs(2);
/// assert_eq!(later.as_millis(), 3_000);
/// assert_eq!(later - start, Duration::from_millis(2_000));
/// assert_eq!(start - later, Duration::ZERO, "an earlier moment is no time after");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Instant(u64);

/// A span of time, in milliseconds: a TTL, a timeout, a grace period, how long something waited.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Duration(u64);

impl Instant {
    /// The clock's origin, where a new core's clock starts.
    pub const ZERO: Instant = Instant(0);
    /// The last moment there is; adding to it stays here.
    pub const MAX: Instant = Instant(u64::MAX);

    /// The moment `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// Milliseconds from the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this moment is; zero if it is not after it.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// The longest span there is: "never" for a host that wants no deadline.
    pub const MAX: Duration = Duration(u64::MAX);

    /// A span of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// A span of `secs` seconds (`Duration::MAX` if that many milliseconds do not fit in a `u64`).
    pub const fn from_secs(secs: u64) -> Self {
        Duration(secs.saturating_mul(1_000))
    }

    /// The span in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whether this is no time at all.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// The moment a span later (saturating at [`Instant::MAX`]).
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, span: Duration) -> Instant {
        Instant(self.0.saturating_add(span.0))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, span: Duration) {
        *self = *self + span;
    }
}

/// The moment a span earlier (saturating at [`Instant::ZERO`]).
impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, span: Duration) -> Instant {
        Instant(self.0.saturating_sub(span.0))
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, span: Duration) {
        *self = *self - span;
    }
}

/// How long after `earlier` this moment is: [`Instant::saturating_duration_since`], zero if it is
/// not after it (a span is never negative).
impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Two spans end to end (saturating at [`Duration::MAX`]).
impl Add for Duration {
    type Output = Duration;
    fn add(self, other: Duration) -> Duration {
        Duration(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Duration {
    fn add_assign(&mut self, other: Duration) {
        *self = *self + other;
    }
}

/// What is left of a span after another (zero if the other is longer).
impl Sub for Duration {
    type Output = Duration;
    fn sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
}

impl SubAssign for Duration {
    fn sub_assign(&mut self, other: Duration) {
        *self = *self - other;
    }
}

/// A span repeated `n` times (saturating at [`Duration::MAX`]).
impl Mul<u64> for Duration {
    type Output = Duration;
    fn mul(self, n: u64) -> Duration {
        Duration(self.0.saturating_mul(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_spans_combine_as_time_does() {
        let t = Instant::from_millis(5_000);
        assert_eq!(t + Duration::from_millis(250), Instant::from_millis(5_250));
        assert_eq!(t - Duration::from_secs(2), Instant::from_millis(3_000));
        assert_eq!(Instant::from_millis(5_250) - t, Duration::from_millis(250));
        assert_eq!(
            Duration::from_secs(3) - Duration::from_secs(1),
            Duration::from_millis(2_000)
        );
        assert_eq!(
            Duration::from_millis(1) + Duration::from_millis(2),
            Duration::from_millis(3)
        );
        assert_eq!(Duration::from_millis(7) * 3, Duration::from_millis(21));
        let mut u = t;
        u += Duration::from_millis(1);
        u -= Duration::from_millis(2);
        assert_eq!(u.as_millis(), 4_999);
    }

    #[test]
    fn nothing_wraps_or_panics_at_the_ends() {
        assert_eq!(Instant::MAX + Duration::from_millis(1), Instant::MAX);
        assert_eq!(Instant::from_millis(1) + Duration::MAX, Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_millis(1), Instant::ZERO);
        assert_eq!(Instant::ZERO - Instant::MAX, Duration::ZERO);
        assert_eq!(Instant::MAX - Instant::ZERO, Duration::MAX);
        assert_eq!(Duration::MAX + Duration::from_millis(1), Duration::MAX);
        assert_eq!(Duration::ZERO - Duration::MAX, Duration::ZERO);
        assert_eq!(Duration::MAX * 2, Duration::MAX);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert!(Duration::ZERO.is_zero() && !Duration::from_millis(1).is_zero());
    }

    /// Traces, snapshots and configuration files wrote these as plain numbers before the types
    /// existed; they must still read the same bytes.
    #[cfg(feature = "serde")]
    #[test]
    fn both_serialise_as_the_bare_number() {
        let bytes = postcard::to_allocvec(&300u64).unwrap();
        assert_eq!(
            postcard::to_allocvec(&Instant::from_millis(300)).unwrap(),
            bytes
        );
        assert_eq!(
            postcard::to_allocvec(&Duration::from_millis(300)).unwrap(),
            bytes
        );
        assert_eq!(
            postcard::from_bytes::<Instant>(&bytes).unwrap(),
            Instant::from_millis(300)
        );
        assert_eq!(
            postcard::from_bytes::<Duration>(&bytes).unwrap(),
            Duration::from_millis(300)
        );
    }
}
