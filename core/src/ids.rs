//! Identifiers the host hands in. Files, owners and clients are opaque bytes: the core compares them,
//! never parses them, so owners of different protocols (NLM, SMB, NFSv4) conflict like any two owners.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// The bytes are shared: cloning an id (into an action, a record, an index) copies a pointer.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Arc<[u8]>);

        impl $name {
            /// The id made of these bytes, exactly; any bytes, of any length, are an id.
            pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
                Self(Arc::from(bytes.into()))
            }
            /// The bytes the host gave.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
            /// A copy of the bytes.
            pub fn to_vec(&self) -> Vec<u8> {
                self.0.to_vec()
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s.as_bytes()))
            }
        }

        impl From<&[u8]> for $name {
            fn from(b: &[u8]) -> Self {
                Self(Arc::from(b))
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(b: Vec<u8>) -> Self {
                Self(Arc::from(b))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), Text(&self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", Text(&self.0))
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::ids::serialize_bytes(&self.0, s)
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::ids::deserialize_bytes(d).map(Self::new)
            }
        }
    };
}

opaque_id!(
    /// A file, as the protocol names it (an NLM file handle is up to 1024 bytes).
    FileId
);
opaque_id!(
    /// A lock owner within its client: NLM's svid+oh, an SMB session+pid, an NFSv4 lock-owner.
    OwnerId
);
opaque_id!(
    /// The host or machine owners belong to (NLM's caller_name, an SMB or NFSv4 client).
    ClientId
);

/// The host's name for one request: the core echoes it in the request's [`Action::Reply`] (and a
/// queued LOCK's `SendGranted` / `WaiterRemoved`) so the host can find the caller. The core never
/// interprets it; brlockd draws them from a counter.
///
/// [`Action::Reply`]: crate::Action::Reply
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct RequestId(pub u64);

/// A queued (or granted, callback pending) blocking request. Allocated by the core from a counter
/// (from 1, never reused in a core's life), announced in `Outcome::Blocked`, and named again by
/// `SendGranted`, `WaiterRemoved` and the host's `CallbackOutcome`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct WaiterId(pub u64);

/// Shows bytes as text when they are printable ASCII, as `0x…` hex otherwise. The same spelling is used
/// by the human-readable serde form, so traces stay readable and round-trip exactly.
struct Text<'a>(&'a [u8]);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_plain_text(self.0) {
            // Safe: checked to be printable ASCII.
            f.write_str(core::str::from_utf8(self.0).unwrap_or_default())
        } else {
            f.write_str("0x")?;
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

fn is_plain_text(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..0x7f).contains(b)) && !bytes.starts_with(b"0x")
}

#[cfg(feature = "serde")]
pub(crate) fn serialize_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use alloc::string::ToString;
    if s.is_human_readable() {
        s.serialize_str(&Text(bytes).to_string())
    } else {
        s.serialize_bytes(bytes)
    }
}

#[cfg(feature = "serde")]
pub(crate) fn deserialize_bytes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<u8>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string (text, or 0x followed by hex digits) or bytes")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            match v.strip_prefix("0x") {
                Some(hex) => parse_hex(hex).ok_or_else(|| E::custom("bad hex after 0x")),
                None => Ok(v.as_bytes().to_vec()),
            }
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    if d.is_human_readable() {
        d.deserialize_any(Visit)
    } else {
        d.deserialize_byte_buf(Visit)
    }
}

#[cfg(feature = "serde")]
fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn printable_ids_show_as_text_and_others_as_hex() {
        assert_eq!(format!("{}", OwnerId::from("alice")), "alice");
        assert_eq!(format!("{}", OwnerId::new([0u8, 255])), "0x00ff");
        // Text that looks like hex is shown as hex so it reads back as the same bytes.
        assert_eq!(format!("{}", OwnerId::from("0x12")), "0x30783132");
    }
}
