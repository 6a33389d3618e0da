//! Portmapper, program 100000 version 2 (RFC 1833 §3): how the server registers NLM and
//! finds statd.
//!
//! SET, UNSET and GETPORT all take a [`Mapping`]; SET and UNSET answer a `bool`, GETPORT a
//! `u32` port (0: not registered). All three are [`XdrCodec`]: use
//! [`crate::xdr::encode_into`] and [`crate::xdr::decode_exact`].

use crate::xdr::{XdrCodec, XdrError, XdrReader, XdrWriter};

pub const PMAP_PROGRAM: u32 = 100_000;
pub const PMAP_VERSION: u32 = 2;
/// The portmapper's well-known port.
pub const PMAP_PORT: u16 = 111;

pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;

/// Portmapper procedure numbers used here (DUMP 4 and CALLIT 5 are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmapProc {
    Null = 0,
    /// Register a mapping; answers `bool`.
    Set = 1,
    /// Remove the mappings of (prog, vers) for every protocol; `prot` and `port` are ignored.
    /// Answers `bool`.
    Unset = 2,
    /// Look up the port of (prog, vers, prot); `port` is ignored. Answers `u32`.
    Getport = 3,
}

/// `mapping`: (program, version, protocol) served on `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub prog: u32,
    pub vers: u32,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub prot: u32,
    /// A port number carried in an XDR `unsigned int`.
    pub port: u32,
}

impl XdrCodec for Mapping {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_u32(self.prog);
        w.put_u32(self.vers);
        w.put_u32(self.prot);
        w.put_u32(self.port);
        Ok(())
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Mapping {
            prog: r.get_u32()?,
            vers: r.get_u32()?,
            prot: r.get_u32()?,
            port: r.get_u32()?,
        })
    }
}

/// rpcbind protocol versions 3 and 4 (RFC 1833 §2): the same program, with addresses as
/// universal addresses and transports as netids.
pub const RPCBIND_VERSION_4: u32 = 4;

/// rpcbind v3/v4 procedures used here (SET and UNSET take an [`Rpcb`] and answer `bool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcbProc {
    Set = 1,
    Unset = 2,
}

/// Longest netid, address or owner string accepted when decoding an [`Rpcb`].
pub const MAX_RPCB_STRING: u32 = 1024;

/// `rpcb`: (program, version) served over netid `netid` at universal address `addr`, registered by
/// `owner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rpcb {
    pub prog: u32,
    pub vers: u32,
    /// `tcp`, `udp`, `tcp6`, `udp6`; empty in an UNSET means every netid.
    pub netid: String,
    /// Universal address (`h1.h2.h3.h4.p1.p2` for IPv4, RFC 5665).
    pub addr: String,
    pub owner: String,
}

impl XdrCodec for Rpcb {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        w.put_u32(self.prog);
        w.put_u32(self.vers);
        w.put_string(self.netid.as_bytes(), MAX_RPCB_STRING)?;
        w.put_string(self.addr.as_bytes(), MAX_RPCB_STRING)?;
        w.put_string(self.owner.as_bytes(), MAX_RPCB_STRING)
    }
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        let prog = r.get_u32()?;
        let vers = r.get_u32()?;
        let mut text = || {
            r.get_string(MAX_RPCB_STRING)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        Ok(Rpcb {
            prog,
            vers,
            netid: text()?,
            addr: text()?,
            owner: text()?,
        })
    }
}

/// The universal address of `addr` (RFC 5665 §5.2.3.3/4): `127.0.0.1.16.205` for 127.0.0.1:4301.
pub fn universal_address(addr: std::net::SocketAddr) -> String {
    let port = addr.port();
    format!("{}.{}.{}", addr.ip(), port >> 8, port & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode_exact, encode_to_vec};
    use quickcheck::quickcheck;

    #[test]
    fn universal_addresses_spell_the_port_as_two_octets() {
        assert_eq!(
            universal_address("127.0.0.1:4301".parse().unwrap()),
            "127.0.0.1.16.205"
        );
        assert_eq!(universal_address("[::1]:111".parse().unwrap()), "::1.0.111");
    }

    #[test]
    fn rpcb_round_trips() {
        let r = Rpcb {
            prog: 100_021,
            vers: 4,
            netid: "tcp".into(),
            addr: "127.0.0.2.3.232".into(),
            owner: "brlockd".into(),
        };
        let bytes = encode_to_vec(&r).unwrap();
        assert_eq!(decode_exact::<Rpcb>(&bytes), Ok(r));
    }

    #[test]
    fn getport_args_wire_form() {
        let m = Mapping {
            prog: 100_024,
            vers: 1,
            prot: IPPROTO_UDP,
            port: 0,
        };
        let bytes = encode_to_vec(&m).unwrap();
        assert_eq!(
            bytes,
            [0, 1, 0x86, 0xb8, 0, 0, 0, 1, 0, 0, 0, 17, 0, 0, 0, 0]
        );
        assert_eq!(decode_exact::<Mapping>(&bytes), Ok(m));
    }

    #[test]
    fn results() {
        assert_eq!(decode_exact::<bool>(&[0, 0, 0, 1]), Ok(true));
        assert_eq!(decode_exact::<u32>(&[0, 0, 0x02, 0xf3]), Ok(755));
        assert_eq!(
            decode_exact::<bool>(&[0, 0, 0, 3]),
            Err(XdrError::BadBool(3))
        );
        assert_eq!(
            decode_exact::<u32>(&[0, 0, 0, 1, 0]),
            Err(XdrError::TrailingBytes(1))
        );
    }

    #[test]
    fn truncated_mapping() {
        assert_eq!(decode_exact::<Mapping>(&[0; 15]), Err(XdrError::Truncated));
    }

    quickcheck! {
        fn mapping_round_trips(prog: u32, vers: u32, prot: u32, port: u32) -> bool {
            let m = Mapping { prog, vers, prot, port };
            decode_exact::<Mapping>(&encode_to_vec(&m).unwrap()) == Ok(m)
        }
        fn results_round_trip(set: bool, port: u32) -> bool {
            decode_exact::<bool>(&encode_to_vec(&set).unwrap()) == Ok(set)
                && decode_exact::<u32>(&encode_to_vec(&port).unwrap()) == Ok(port)
        }
    }
}
