//! NSM, the Network Status Monitor protocol: program 100024 version 1 (XNFS; `sm_inter.x`).
//!
//! The lock server is an NSM *client*: it asks the local statd to monitor each NLM client
//! (SM_MON) and to stop (SM_UNMON, SM_UNMON_ALL). When a monitored host reboots, statd calls
//! back the program/version/procedure named in [`MyId`] with a [`RebootCallback`] (Linux
//! lockd registers NLM procedure 16, [`crate::nlm::NlmProc::NsmNotify`]). SM_NOTIFY is what
//! a rebooted host's statd sends to the statds that monitored it.
//!
//! Every type implements [`XdrCodec`]; use [`crate::xdr::encode_into`] and
//! [`crate::xdr::decode_exact`] on them.

use crate::xdr::{XdrCodec, XdrError, XdrReader, XdrWriter};

pub const NSM_PROGRAM: u32 = 100_024;
pub const NSM_VERSION: u32 = 1;
/// `SM_MAXSTRLEN`: longest host name.
pub const MAX_NAME: u32 = 1024;
/// `SM_PRIV_SIZE`: the private cookie statd stores and echoes back.
pub const PRIVATE_SIZE: usize = 16;

/// NSM procedure numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsmProc {
    Null = 0,
    /// Args [`SmName`], result [`SmStatRes`].
    Stat = 1,
    /// Args [`Mon`], result [`SmStatRes`].
    Mon = 2,
    /// Args [`MonId`], result [`SmStat`].
    Unmon = 3,
    /// Args [`MyId`], result [`SmStat`].
    UnmonAll = 4,
    /// No args, no result.
    SimuCrash = 5,
    /// Args [`StatChange`], no result.
    Notify = 6,
}

/// `sm_name`: the argument of SM_STAT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmName {
    pub mon_name: Vec<u8>,
}

/// `my_id`: where statd should send the reboot callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MyId {
    /// The monitoring host's own name (Linux lockd sends "127.0.0.1" or its node name).
    pub my_name: Vec<u8>,
    pub my_prog: u32,
    pub my_vers: u32,
    pub my_proc: u32,
}

/// `mon_id`: which host to monitor, and for whom. The argument of SM_UNMON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonId {
    pub mon_name: Vec<u8>,
    pub my_id: MyId,
}

/// `mon`: the argument of SM_MON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mon {
    pub mon_id: MonId,
    /// Returned unchanged in the [`RebootCallback`].
    pub private: [u8; PRIVATE_SIZE],
}

/// `res`: whether statd agreed to monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmResult {
    Success = 0,
    Failure = 1,
}

/// `sm_stat_res`: the result of SM_STAT and SM_MON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmStatRes {
    pub result: SmResult,
    /// The local statd's state number (odd while up).
    pub state: u32,
}

/// `sm_stat`: the result of SM_UNMON and SM_UNMON_ALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmStat {
    pub state: u32,
}

/// `stat_chge`: the argument of SM_NOTIFY ("host `mon_name` is now at `state`").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatChange {
    pub mon_name: Vec<u8>,
    pub state: u32,
}

/// sm_inter.x `status` (Linux `struct nlm_reboot`, decoded by lockd's
/// `nlmsvc_decode_reboot`): what statd sends to the registered callback when monitored host
/// `mon_name` reboots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebootCallback {
    pub mon_name: Vec<u8>,
    /// The rebooted host's new state number.
    pub state: u32,
    /// The `private` given in SM_MON.
    pub private: [u8; PRIVATE_SIZE],
}

impl XdrCodec for SmName {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_string(&self.mon_name, MAX_NAME)
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(SmName {
            mon_name: r.get_string(MAX_NAME)?.to_vec(),
        })
    }
}

impl XdrCodec for MyId {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_string(&self.my_name, MAX_NAME)?;
        w.put_u32(self.my_prog);
        w.put_u32(self.my_vers);
        w.put_u32(self.my_proc);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(MyId {
            my_name: r.get_string(MAX_NAME)?.to_vec(),
            my_prog: r.get_u32()?,
            my_vers: r.get_u32()?,
            my_proc: r.get_u32()?,
        })
    }
}

impl XdrCodec for MonId {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_string(&self.mon_name, MAX_NAME)?;
        self.my_id.encode(w)
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(MonId {
            mon_name: r.get_string(MAX_NAME)?.to_vec(),
            my_id: MyId::decode(r)?,
        })
    }
}

impl XdrCodec for Mon {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        self.mon_id.encode(w)?;
        w.put_opaque_fixed(&self.private);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Mon {
            mon_id: MonId::decode(r)?,
            private: r.get_opaque_array()?,
        })
    }
}

impl XdrCodec for SmStatRes {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_enum(self.result as u32);
        w.put_u32(self.state);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(SmStatRes {
            result: r.get_enum(|v| match v {
                0 => Some(SmResult::Success),
                1 => Some(SmResult::Failure),
                _ => None,
            })?,
            state: r.get_u32()?,
        })
    }
}

impl XdrCodec for SmStat {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_u32(self.state);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(SmStat {
            state: r.get_u32()?,
        })
    }
}

impl XdrCodec for StatChange {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_string(&self.mon_name, MAX_NAME)?;
        w.put_u32(self.state);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(StatChange {
            mon_name: r.get_string(MAX_NAME)?.to_vec(),
            state: r.get_u32()?,
        })
    }
}

impl XdrCodec for RebootCallback {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_string(&self.mon_name, MAX_NAME)?;
        w.put_u32(self.state);
        w.put_opaque_fixed(&self.private);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(RebootCallback {
            mon_name: r.get_string(MAX_NAME)?.to_vec(),
            state: r.get_u32()?,
            private: r.get_opaque_array()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode_exact, encode_to_vec};
    use quickcheck::{Arbitrary, Gen, quickcheck};

    fn name(g: &mut Gen) -> Vec<u8> {
        let mut v = Vec::<u8>::arbitrary(g);
        v.truncate(MAX_NAME as usize);
        v
    }

    fn private(g: &mut Gen) -> [u8; PRIVATE_SIZE] {
        std::array::from_fn(|_| u8::arbitrary(g))
    }

    impl Arbitrary for MyId {
        fn arbitrary(g: &mut Gen) -> Self {
            MyId {
                my_name: name(g),
                my_prog: u32::arbitrary(g),
                my_vers: u32::arbitrary(g),
                my_proc: u32::arbitrary(g),
            }
        }
    }

    impl Arbitrary for MonId {
        fn arbitrary(g: &mut Gen) -> Self {
            MonId {
                mon_name: name(g),
                my_id: MyId::arbitrary(g),
            }
        }
    }

    impl Arbitrary for Mon {
        fn arbitrary(g: &mut Gen) -> Self {
            Mon {
                mon_id: MonId::arbitrary(g),
                private: private(g),
            }
        }
    }

    impl Arbitrary for SmStatRes {
        fn arbitrary(g: &mut Gen) -> Self {
            SmStatRes {
                result: if bool::arbitrary(g) {
                    SmResult::Success
                } else {
                    SmResult::Failure
                },
                state: u32::arbitrary(g),
            }
        }
    }

    impl Arbitrary for RebootCallback {
        fn arbitrary(g: &mut Gen) -> Self {
            RebootCallback {
                mon_name: name(g),
                state: u32::arbitrary(g),
                private: private(g),
            }
        }
    }

    fn round_trips<T: XdrCodec + PartialEq>(v: T) -> bool {
        decode_exact::<T>(&encode_to_vec(&v).unwrap()) == Ok(v)
    }

    #[test]
    fn mon_wire_form() {
        let mon = Mon {
            mon_id: MonId {
                mon_name: b"client1".to_vec(),
                my_id: MyId {
                    my_name: b"srv".to_vec(),
                    my_prog: 100_021,
                    my_vers: 4,
                    my_proc: 16,
                },
            },
            private: [0xaa; 16],
        };
        let bytes = encode_to_vec(&mon).unwrap();
        #[rustfmt::skip]
        let mut expected = vec![
            0, 0, 0, 7, b'c', b'l', b'i', b'e', b'n', b't', b'1', 0,
            0, 0, 0, 3, b's', b'r', b'v', 0,
            0, 1, 0x86, 0xb5, 0, 0, 0, 4, 0, 0, 0, 16,
        ];
        expected.extend_from_slice(&[0xaa; 16]);
        assert_eq!(bytes, expected);
        assert_eq!(decode_exact::<Mon>(&bytes), Ok(mon));
    }

    #[test]
    fn reboot_callback_needs_all_16_private_bytes() {
        let cb = RebootCallback {
            mon_name: b"h".to_vec(),
            state: 3,
            private: [1; 16],
        };
        let bytes = encode_to_vec(&cb).unwrap();
        assert_eq!(bytes.len(), 8 + 4 + 16);
        assert_eq!(
            decode_exact::<RebootCallback>(&bytes[..bytes.len() - 1]),
            Err(XdrError::Truncated)
        );
    }

    #[test]
    fn name_over_1024_bytes_is_refused() {
        let long = SmName {
            mon_name: vec![b'a'; 1025],
        };
        assert_eq!(
            encode_to_vec(&long),
            Err(XdrError::TooLong {
                max: 1024,
                len: 1025
            })
        );
    }

    #[test]
    fn bad_result_enum_is_refused() {
        assert_eq!(
            decode_exact::<SmStatRes>(&[0, 0, 0, 2, 0, 0, 0, 1]),
            Err(XdrError::BadEnum(2))
        );
    }

    quickcheck! {
        fn sm_name_round_trips(n: Vec<u8>) -> bool {
            let mut n = n;
            n.truncate(1024);
            round_trips(SmName { mon_name: n })
        }
        fn mon_round_trips(v: Mon) -> bool { round_trips(v) }
        fn mon_id_round_trips(v: MonId) -> bool { round_trips(v) }
        fn my_id_round_trips(v: MyId) -> bool { round_trips(v) }
        fn sm_stat_res_round_trips(v: SmStatRes) -> bool { round_trips(v) }
        fn sm_stat_round_trips(state: u32) -> bool { round_trips(SmStat { state }) }
        fn stat_change_round_trips(n: Vec<u8>, state: u32) -> bool {
            let mut n = n;
            n.truncate(1024);
            round_trips(StatChange { mon_name: n, state })
        }
        fn reboot_callback_round_trips(v: RebootCallback) -> bool { round_trips(v) }

        fn decoding_arbitrary_bytes_never_panics(bytes: Vec<u8>) -> bool {
            let _ = decode_exact::<SmName>(&bytes);
            let _ = decode_exact::<Mon>(&bytes);
            let _ = decode_exact::<MonId>(&bytes);
            let _ = decode_exact::<MyId>(&bytes);
            let _ = decode_exact::<SmStatRes>(&bytes);
            let _ = decode_exact::<SmStat>(&bytes);
            let _ = decode_exact::<StatChange>(&bytes);
            let _ = decode_exact::<RebootCallback>(&bytes);
            true
        }
    }
}
