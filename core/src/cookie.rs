//! Callback cookies: the bytes that name a grant in its GRANTED callback, so that the client's answer
//! (NLM_GRANTED_RES) can be matched to it. A cookie anyone can guess lets anyone confirm or undo
//! another client's grant (issue 13, row 12: cookies were "brlk" + the waiter number), so a cookie is
//! the waiter number under a keyed permutation, followed by a keyed tag of it. The key comes from the
//! host (`Config::cookie_key`, drawn from the operating system's random source at start); the core
//! stays deterministic — the same key gives the same cookies, natively and in wasm.
//!
//! The keyed function is SipHash-1-3 (Aumasson and Bernstein; the variant Rust's standard hash maps
//! use), written out here so the core needs no dependency for it. The permutation is a four-round
//! Feistel network over the 64-bit waiter number with SipHash as its round function, so cookies of
//! consecutive waiters look unrelated; the 64-bit tag makes a guessed cookie match with probability
//! 2^-64.

use core::fmt;

use crate::ids::WaiterId;

/// Length of a callback cookie.
pub const COOKIE_LEN: usize = 16;

/// The secret behind callback cookies. Its `Debug` form hides it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CookieKey([u8; 16]);

impl CookieKey {
    /// A key of these 16 bytes. A host draws them from the operating system's random source at start;
    /// tests and traces use fixed ones, so that replays make the same cookies.
    pub const fn new(key: [u8; 16]) -> Self {
        Self(key)
    }

    /// The key's bytes (to write it into a trace).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The cookie that names `waiter`'s grant.
    pub fn cookie(&self, waiter: WaiterId) -> [u8; COOKIE_LEN] {
        let mut out = [0u8; COOKIE_LEN];
        out[..8].copy_from_slice(&self.permute(waiter.0).to_be_bytes());
        out[8..].copy_from_slice(&self.tag(waiter.0).to_be_bytes());
        out
    }

    /// The waiter `cookie` names, if this key made it.
    pub fn waiter(&self, cookie: &[u8]) -> Option<WaiterId> {
        let cookie: &[u8; COOKIE_LEN] = cookie.try_into().ok()?;
        let (sealed, tag) = cookie.split_at(8);
        let id = self.unpermute(u64::from_be_bytes(sealed.try_into().ok()?));
        // Compared without an early exit, so timing does not say how many bytes were right.
        let expected = self.tag(id).to_be_bytes();
        let differ = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (differ == 0).then_some(WaiterId(id))
    }

    fn tag(&self, id: u64) -> u64 {
        let mut message = [0u8; 9];
        message[0] = b'T';
        message[1..].copy_from_slice(&id.to_le_bytes());
        siphash::<1, 3>(&self.0, &message)
    }

    fn round(&self, round: u8, half: u32) -> u32 {
        let mut message = [0u8; 6];
        message[0] = b'F';
        message[1] = round;
        message[2..].copy_from_slice(&half.to_le_bytes());
        siphash::<1, 3>(&self.0, &message) as u32
    }

    fn permute(&self, id: u64) -> u64 {
        let (mut left, mut right) = ((id >> 32) as u32, id as u32);
        for round in 0..4 {
            (left, right) = (right, left ^ self.round(round, right));
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    fn unpermute(&self, sealed: u64) -> u64 {
        let (mut left, mut right) = ((sealed >> 32) as u32, sealed as u32);
        for round in (0..4).rev() {
            (left, right) = (right ^ self.round(round, left), left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

/// In traces the key is written out (a replay must make the same cookies): as `0x` and 32 hex digits
/// in text, as 16 bytes in postcard.
#[cfg(feature = "serde")]
impl serde::Serialize for CookieKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut text = alloc::string::String::from("0x");
            for b in self.0 {
                text.push_str(&alloc::format!("{b:02x}"));
            }
            s.serialize_str(&text)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for CookieKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = crate::ids::deserialize_bytes(d)?;
        let key: [u8; 16] = bytes.try_into().map_err(|_| {
            serde::de::Error::custom("a cookie key is 16 bytes (0x and 32 hex digits)")
        })?;
        Ok(Self(key))
    }
}

/// SipHash-c-d of `message` under `key` (the reference algorithm: 64-bit output, little-endian words,
/// the length in the last block's top byte).
fn siphash<const C: usize, const D: usize>(key: &[u8; 16], message: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = message.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        compress::<C>(&mut v, m);
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    let m = u64::from_le_bytes(last) | ((message.len() as u64) << 56);
    compress::<C>(&mut v, m);
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress<const C: usize>(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    for _ in 0..C {
        sip_round(v);
    }
    v[0] ^= m;
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::Hasher;

    #[test]
    fn siphash_2_4_gives_the_papers_test_vectors() {
        // Aumasson and Bernstein, "SipHash: a fast short-input PRF", appendix A: key 00..0f, message
        // 00..0e; and the reference implementation's vector for the empty message.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let message: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash::<2, 4>(&key, &message), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash::<2, 4>(&key, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn siphash_1_3_agrees_with_rusts_default_hasher() {
        // std's DefaultHasher is SipHash-1-3 with a zero key.
        for len in 0..40u8 {
            let message: alloc::vec::Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let mut std_hasher = std::collections::hash_map::DefaultHasher::new();
            std_hasher.write(&message);
            assert_eq!(
                siphash::<1, 3>(&[0; 16], &message),
                std_hasher.finish(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_cookie_names_its_waiter_under_its_key_only() {
        let key = CookieKey::new(*b"0123456789abcdef");
        for id in [0, 1, 2, 1 << 32, u64::MAX] {
            let cookie = key.cookie(WaiterId(id));
            assert_eq!(key.waiter(&cookie), Some(WaiterId(id)));
            assert_ne!(
                &cookie[..8],
                &id.to_be_bytes(),
                "the number is not in clear"
            );
            assert_eq!(CookieKey::new(*b"0123456789abcdeF").waiter(&cookie), None);
            for bit in 0..COOKIE_LEN * 8 {
                let mut forged = cookie;
                forged[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(key.waiter(&forged), None, "bit {bit} flipped");
            }
            assert_eq!(key.waiter(&cookie[..15]), None);
        }
    }

    #[test]
    fn cookies_of_consecutive_waiters_look_unrelated() {
        let key = CookieKey::new([7; 16]);
        for id in 1..200u64 {
            let (a, b) = (key.cookie(WaiterId(id)), key.cookie(WaiterId(id + 1)));
            let differing: u32 = a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum();
            // Independent random 128-bit strings differ in 64 ± 5.7 bits; 32 is over 5 deviations off.
            assert!(
                differing > 32,
                "waiters {id} and {}: {differing} bits differ",
                id + 1
            );
        }
    }
}
