//! RPC credentials and verifiers: `opaque_auth` (RFC 5531 §8.2) and AUTH_SYS (§A).

use crate::xdr::{XdrCodec, XdrError, XdrReader, XdrWriter, decode_exact, encode_to_vec};

/// RFC 5531 §8.2: the body of any `opaque_auth` is at most 400 bytes.
pub const MAX_AUTH_BODY: u32 = 400;
/// RFC 5531 appendix A: `machinename<255>`.
pub const MAX_MACHINE_NAME: u32 = 255;
/// RFC 5531 appendix A: `gids<16>`.
pub const MAX_AUTH_SYS_GIDS: u32 = 16;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;

/// AUTH_SYS parameters (`authsys_parms`): who the caller says it is. Not proof of anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSys {
    /// Arbitrary id the caller's machine chose.
    pub stamp: u32,
    /// Caller's host name, as bytes (at most 255).
    pub machine_name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (at most 16).
    pub gids: Vec<u32>,
}

impl XdrCodec for AuthSys {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        let count = u32::try_from(self.gids.len())
            .ok()
            .filter(|&n| n <= MAX_AUTH_SYS_GIDS)
            .ok_or(XdrError::TooLong {
                max: MAX_AUTH_SYS_GIDS,
                len: self.gids.len() as u64,
            })?;
        w.put_u32(self.stamp);
        w.put_string(&self.machine_name, MAX_MACHINE_NAME)?;
        w.put_u32(self.uid);
        w.put_u32(self.gid);
        w.put_u32(count);
        for gid in &self.gids {
            w.put_u32(*gid);
        }
        Ok(())
    }

    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        let stamp = r.get_u32()?;
        let machine_name = r.get_string(MAX_MACHINE_NAME)?.to_vec();
        let uid = r.get_u32()?;
        let gid = r.get_u32()?;
        let count = r.get_u32()?;
        if count > MAX_AUTH_SYS_GIDS {
            return Err(XdrError::TooLong {
                max: MAX_AUTH_SYS_GIDS,
                len: u64::from(count),
            });
        }
        let gids = (0..count).map(|_| r.get_u32()).collect::<Result<_, _>>()?;
        Ok(AuthSys {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
        })
    }
}

/// A credential or verifier (`opaque_auth`), with the flavours this server understands
/// parsed and every other flavour kept as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// AUTH_NONE. A non-empty body on the wire is accepted and dropped.
    None,
    /// AUTH_SYS (formerly AUTH_UNIX), body fully parsed.
    Sys(AuthSys),
    /// Any other flavour (AUTH_DH, RPCSEC_GSS, …): kept raw. `flavor` is never 0 or 1.
    Other { flavor: u32, body: Vec<u8> },
}

impl XdrCodec for Auth {
    fn encode(&self, w: &mut XdrWriter<'_>) -> Result<(), XdrError> {
        match self {
            Auth::None => {
                w.put_enum(AUTH_NONE);
                w.put_opaque(&[], MAX_AUTH_BODY)
            }
            Auth::Sys(sys) => {
                let body = encode_to_vec(sys)?;
                w.put_enum(AUTH_SYS);
                w.put_opaque(&body, MAX_AUTH_BODY)
            }
            Auth::Other { flavor, body } => {
                w.put_enum(*flavor);
                w.put_opaque(body, MAX_AUTH_BODY)
            }
        }
    }

    /// An AUTH_SYS body that does not parse exactly (including trailing bytes) is an error:
    /// the server answers AUTH_ERROR/AUTH_BADCRED rather than guess.
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        let flavor = r.get_u32()?;
        let body = r.get_opaque(MAX_AUTH_BODY)?;
        Ok(match flavor {
            AUTH_NONE => Auth::None,
            AUTH_SYS => Auth::Sys(decode_exact(body)?),
            flavor => Auth::Other {
                flavor,
                body: body.to_vec(),
            },
        })
    }
}

/// RFC 5531 §9 `auth_stat`: why a call's authentication was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStat {
    Ok = 0,
    BadCred = 1,
    RejectedCred = 2,
    BadVerf = 3,
    RejectedVerf = 4,
    TooWeak = 5,
    InvalidResp = 6,
    Failed = 7,
    /// RPCSEC_GSS (RFC 2203).
    GssCredProblem = 13,
    GssCtxProblem = 14,
}

impl AuthStat {
    pub const ALL: [AuthStat; 10] = [
        AuthStat::Ok,
        AuthStat::BadCred,
        AuthStat::RejectedCred,
        AuthStat::BadVerf,
        AuthStat::RejectedVerf,
        AuthStat::TooWeak,
        AuthStat::InvalidResp,
        AuthStat::Failed,
        AuthStat::GssCredProblem,
        AuthStat::GssCtxProblem,
    ];

    pub fn from_wire(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u32 == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_sys() -> AuthSys {
        AuthSys {
            stamp: 7,
            machine_name: b"client".to_vec(),
            uid: 1000,
            gid: 100,
            gids: vec![4, 24],
        }
    }

    #[test]
    fn auth_sys_wire_form() {
        let bytes = encode_to_vec(&Auth::Sys(auth_sys())).unwrap();
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 36,          // flavour, body length
            0, 0, 0, 7,                       // stamp
            0, 0, 0, 6, b'c', b'l', b'i', b'e', b'n', b't', 0, 0,
            0, 0, 3, 232, 0, 0, 0, 100,       // uid, gid
            0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 24,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(decode_exact::<Auth>(&bytes), Ok(Auth::Sys(auth_sys())));
    }

    #[test]
    fn too_many_gids_is_refused() {
        let mut sys = auth_sys();
        sys.gids = vec![0; 17];
        assert_eq!(
            encode_to_vec(&sys),
            Err(XdrError::TooLong { max: 16, len: 17 })
        );
        let mut bytes = encode_to_vec(&auth_sys()).unwrap();
        // Patch the gid count (offset: stamp 4 + name 4+8 + uid 4 + gid 4 = 24).
        bytes[24..28].copy_from_slice(&17u32.to_be_bytes());
        assert_eq!(
            decode_exact::<AuthSys>(&bytes),
            Err(XdrError::TooLong { max: 16, len: 17 })
        );
    }

    #[test]
    fn auth_sys_with_trailing_bytes_is_refused() {
        let mut body = encode_to_vec(&auth_sys()).unwrap();
        body.extend_from_slice(&[0; 4]);
        let mut bytes = Vec::new();
        let mut w = XdrWriter::new(&mut bytes);
        w.put_u32(AUTH_SYS);
        w.put_opaque(&body, MAX_AUTH_BODY).unwrap();
        assert_eq!(
            decode_exact::<Auth>(&bytes),
            Err(XdrError::TrailingBytes(4))
        );
    }

    #[test]
    fn body_over_400_bytes_is_refused() {
        let other = Auth::Other {
            flavor: 6,
            body: vec![0; 401],
        };
        assert_eq!(
            encode_to_vec(&other),
            Err(XdrError::TooLong { max: 400, len: 401 })
        );
    }

    #[test]
    fn unknown_flavour_is_kept_raw() {
        let other = Auth::Other {
            flavor: 6,
            body: vec![1, 2, 3],
        };
        let bytes = encode_to_vec(&other).unwrap();
        assert_eq!(decode_exact::<Auth>(&bytes), Ok(other));
    }
}
