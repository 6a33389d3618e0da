//! ONC RPC v2 messages (RFC 5531 §9): call headers and every kind of reply, both directions.
//!
//! The server decodes calls and encodes replies; it also makes calls of its own (NLM GRANTED
//! callbacks, portmap, NSM) and so encodes calls and decodes replies.
//!
//! Decoding a call is staged so the server always knows what it may answer:
//! [`decode_call`] fails with a [`CallError`] that says how far it got, and
//! [`CallError::reply`] gives the reply RFC 5531 prescribes for that point (or `None` when
//! not even the xid is known and the record must be dropped). Argument decoding happens later
//! in the program's own module; a failure there is answered with
//! [`AcceptStat::GarbageArgs`] using the header's xid.

use std::fmt;

use super::auth::{Auth, AuthStat};
use crate::xdr::{XdrCodec, XdrError, XdrReader, XdrWriter};

/// The only ONC RPC version (RFC 5531 §9: `rpcvers` must be 2).
pub const RPC_VERSION: u32 = 2;

const MSG_CALL: u32 = 0;
const MSG_REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;

/// The direction of a message (`msg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Call,
    Reply,
}

/// Reads the xid and message type that start every RPC message, e.g. to route a record
/// arriving on a connection used in both directions.
pub fn peek_message(record: &[u8]) -> Result<(u32, MessageType), XdrError> {
    let mut r = XdrReader::new(record);
    let xid = r.get_u32()?;
    let kind = r.get_enum(|v| match v {
        MSG_CALL => Some(MessageType::Call),
        MSG_REPLY => Some(MessageType::Reply),
        _ => None,
    })?;
    Ok((xid, kind))
}

/// Everything in a call before the procedure's arguments (`rpcvers` is always 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallHeader {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    pub program: u32,
    pub version: u32,
    pub procedure: u32,
    pub cred: Auth,
    pub verf: Auth,
}

/// A decoded call: the header and the still-encoded arguments that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    pub header: CallHeader,
    pub args: &'a [u8],
}

/// Why a record is not a usable call, and how far decoding got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Not even xid, message type, rpcvers, program, version and procedure could be read.
    /// Nothing can be answered: drop the record.
    Unreadable(XdrError),
    /// A well-formed start of a reply, not a call; see [`decode_reply`].
    NotACall { xid: u32 },
    /// `rpcvers` is not 2: answer MSG_DENIED/RPC_MISMATCH (see [`CallError::reply`]).
    RpcMismatch { xid: u32, rpcvers: u32 },
    /// The credential is malformed: answer AUTH_ERROR/AUTH_BADCRED.
    BadCred {
        xid: u32,
        program: u32,
        version: u32,
        procedure: u32,
        error: XdrError,
    },
    /// The verifier is malformed: answer AUTH_ERROR/AUTH_BADVERF.
    BadVerf {
        xid: u32,
        program: u32,
        version: u32,
        procedure: u32,
        error: XdrError,
    },
}

impl CallError {
    /// The xid to answer with, when one was read.
    pub fn xid(&self) -> Option<u32> {
        match self {
            CallError::Unreadable(_) => None,
            CallError::NotACall { xid }
            | CallError::RpcMismatch { xid, .. }
            | CallError::BadCred { xid, .. }
            | CallError::BadVerf { xid, .. } => Some(*xid),
        }
    }

    /// The reply RFC 5531 prescribes, or `None` when the record must be dropped unanswered.
    pub fn reply(&self) -> Option<Reply> {
        let (xid, reject) = match *self {
            CallError::Unreadable(_) | CallError::NotACall { .. } => return None,
            CallError::RpcMismatch { xid, .. } => (
                xid,
                RejectStat::RpcMismatch {
                    low: RPC_VERSION,
                    high: RPC_VERSION,
                },
            ),
            CallError::BadCred { xid, .. } => (xid, RejectStat::AuthError(AuthStat::BadCred)),
            CallError::BadVerf { xid, .. } => (xid, RejectStat::AuthError(AuthStat::BadVerf)),
        };
        Some(Reply::denied(xid, reject))
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unreadable(e) => write!(f, "unreadable RPC call header: {e}"),
            CallError::NotACall { xid } => {
                write!(f, "xid {xid:#x}: reply where a call was expected")
            }
            CallError::RpcMismatch { xid, rpcvers } => {
                write!(
                    f,
                    "xid {xid:#x}: RPC version {rpcvers}, only 2 is supported"
                )
            }
            CallError::BadCred { xid, error, .. } => {
                write!(f, "xid {xid:#x}: malformed credential: {error}")
            }
            CallError::BadVerf { xid, error, .. } => {
                write!(f, "xid {xid:#x}: malformed verifier: {error}")
            }
        }
    }
}

impl std::error::Error for CallError {}

/// Decodes the call header of one record; the arguments are returned undecoded.
pub fn decode_call(record: &[u8]) -> Result<Call<'_>, CallError> {
    let mut r = XdrReader::new(record);
    let (xid, kind) = peek_message(record).map_err(CallError::Unreadable)?;
    // peek_message read exactly these two words.
    r.get_u32().map_err(CallError::Unreadable)?;
    r.get_u32().map_err(CallError::Unreadable)?;
    if kind == MessageType::Reply {
        return Err(CallError::NotACall { xid });
    }
    let rpcvers = r.get_u32().map_err(CallError::Unreadable)?;
    if rpcvers != RPC_VERSION {
        return Err(CallError::RpcMismatch { xid, rpcvers });
    }
    let program = r.get_u32().map_err(CallError::Unreadable)?;
    let version = r.get_u32().map_err(CallError::Unreadable)?;
    let procedure = r.get_u32().map_err(CallError::Unreadable)?;
    let cred = Auth::decode(&mut r).map_err(|error| CallError::BadCred {
        xid,
        program,
        version,
        procedure,
        error,
    })?;
    let verf = Auth::decode(&mut r).map_err(|error| CallError::BadVerf {
        xid,
        program,
        version,
        procedure,
        error,
    })?;
    Ok(Call {
        header: CallHeader {
            xid,
            program,
            version,
            procedure,
            cred,
            verf,
        },
        args: r.take_rest(),
    })
}

/// Appends a call (header, then the already-encoded `args`) to `out`, unframed.
/// Fails only if an auth body exceeds 400 bytes; `out` is then left as it was.
pub fn encode_call(header: &CallHeader, args: &[u8], out: &mut Vec<u8>) -> Result<(), XdrError> {
    let start = out.len();
    let mut w = XdrWriter::new(out);
    w.put_u32(header.xid);
    w.put_enum(MSG_CALL);
    w.put_u32(RPC_VERSION);
    w.put_u32(header.program);
    w.put_u32(header.version);
    w.put_u32(header.procedure);
    let result = header
        .cred
        .encode(&mut w)
        .and_then(|()| header.verf.encode(&mut w));
    if result.is_ok() {
        w.put_raw(args);
    } else {
        out.truncate(start);
    }
    result
}

/// A reply to the call with the same xid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub body: ReplyBody,
}

/// `reply_body`: the call was either accepted (authentication passed) or denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    Accepted { verf: Auth, stat: AcceptStat },
    Denied(RejectStat),
}

/// Outcome of an accepted call (`accept_stat` with its arms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptStat {
    /// The procedure ran; `results` is its encoded result (empty for `void`).
    Success { results: Vec<u8> },
    /// The program is not served here.
    ProgUnavail,
    /// The program is served, but not this version: `low..=high` are.
    ProgMismatch { low: u32, high: u32 },
    /// The version does not have this procedure.
    ProcUnavail,
    /// The arguments could not be decoded.
    GarbageArgs,
    /// The server failed for a reason of its own (e.g. out of memory).
    SystemErr,
}

/// Why a call was denied (`rejected_reply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectStat {
    /// `rpcvers` was not 2; `low..=high` are supported.
    RpcMismatch {
        low: u32,
        high: u32,
    },
    AuthError(AuthStat),
}

impl Reply {
    /// MSG_ACCEPTED/SUCCESS with an AUTH_NONE verifier.
    pub fn success(xid: u32, results: Vec<u8>) -> Self {
        Self::accepted(xid, AcceptStat::Success { results })
    }

    /// MSG_ACCEPTED with an AUTH_NONE verifier, which is what AUTH_NONE and AUTH_SYS
    /// callers expect.
    pub fn accepted(xid: u32, stat: AcceptStat) -> Self {
        Reply {
            xid,
            body: ReplyBody::Accepted {
                verf: Auth::None,
                stat,
            },
        }
    }

    pub fn denied(xid: u32, reject: RejectStat) -> Self {
        Reply {
            xid,
            body: ReplyBody::Denied(reject),
        }
    }
}

/// Appends an accepted SUCCESS reply header (no results) to `out`, so the caller can encode
/// results straight after it without an intermediate buffer.
pub fn encode_success_header(xid: u32, verf: &Auth, out: &mut Vec<u8>) -> Result<(), XdrError> {
    let start = out.len();
    let mut w = XdrWriter::new(out);
    w.put_u32(xid);
    w.put_enum(MSG_REPLY);
    w.put_enum(MSG_ACCEPTED);
    let result = verf.encode(&mut w);
    match result {
        Ok(()) => w.put_enum(0),
        Err(_) => out.truncate(start),
    }
    result
}

/// Appends `reply` to `out`, unframed. Fails only if the verifier body exceeds 400 bytes;
/// `out` is then left as it was.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) -> Result<(), XdrError> {
    let start = out.len();
    let mut w = XdrWriter::new(out);
    w.put_u32(reply.xid);
    w.put_enum(MSG_REPLY);
    match &reply.body {
        ReplyBody::Accepted { verf, stat } => {
            w.put_enum(MSG_ACCEPTED);
            if let Err(e) = verf.encode(&mut w) {
                out.truncate(start);
                return Err(e);
            }
            match stat {
                AcceptStat::Success { results } => {
                    w.put_enum(0);
                    w.put_raw(results);
                }
                AcceptStat::ProgUnavail => w.put_enum(1),
                AcceptStat::ProgMismatch { low, high } => {
                    w.put_enum(2);
                    w.put_u32(*low);
                    w.put_u32(*high);
                }
                AcceptStat::ProcUnavail => w.put_enum(3),
                AcceptStat::GarbageArgs => w.put_enum(4),
                AcceptStat::SystemErr => w.put_enum(5),
            }
        }
        ReplyBody::Denied(reject) => {
            w.put_enum(MSG_DENIED);
            match reject {
                RejectStat::RpcMismatch { low, high } => {
                    w.put_enum(0);
                    w.put_u32(*low);
                    w.put_u32(*high);
                }
                RejectStat::AuthError(stat) => {
                    w.put_enum(1);
                    w.put_enum(*stat as u32);
                }
            }
        }
    }
    Ok(())
}

/// Decodes one reply record. SUCCESS results are returned still encoded (the caller knows
/// which procedure they answer); every other kind must end exactly. A call record is
/// `BadEnum(0)` (its message type).
pub fn decode_reply(record: &[u8]) -> Result<Reply, XdrError> {
    let mut r = XdrReader::new(record);
    let xid = r.get_u32()?;
    let kind = r.get_u32()?;
    if kind != MSG_REPLY {
        return Err(XdrError::BadEnum(kind));
    }
    let body = match r.get_u32()? {
        MSG_ACCEPTED => {
            let verf = Auth::decode(&mut r)?;
            let stat = match r.get_u32()? {
                0 => AcceptStat::Success {
                    results: r.take_rest().to_vec(),
                },
                1 => AcceptStat::ProgUnavail,
                2 => AcceptStat::ProgMismatch {
                    low: r.get_u32()?,
                    high: r.get_u32()?,
                },
                3 => AcceptStat::ProcUnavail,
                4 => AcceptStat::GarbageArgs,
                5 => AcceptStat::SystemErr,
                v => return Err(XdrError::BadEnum(v)),
            };
            ReplyBody::Accepted { verf, stat }
        }
        MSG_DENIED => ReplyBody::Denied(match r.get_u32()? {
            0 => RejectStat::RpcMismatch {
                low: r.get_u32()?,
                high: r.get_u32()?,
            },
            1 => RejectStat::AuthError(r.get_enum(AuthStat::from_wire)?),
            v => return Err(XdrError::BadEnum(v)),
        }),
        v => return Err(XdrError::BadEnum(v)),
    };
    r.finish()?;
    Ok(Reply { xid, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::auth::AuthSys;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    fn header() -> CallHeader {
        CallHeader {
            xid: 0x1234_5678,
            program: 100_021,
            version: 4,
            procedure: 2,
            cred: Auth::None,
            verf: Auth::None,
        }
    }

    fn call_bytes(header: &CallHeader, args: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_call(header, args, &mut out).unwrap();
        out
    }

    #[test]
    fn call_wire_form() {
        let bytes = call_bytes(&header(), &[0, 0, 0, 9]);
        #[rustfmt::skip]
        let expected = [
            0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0, 0, 0, 2,  // xid, CALL, rpcvers
            0, 1, 0x86, 0xb5, 0, 0, 0, 4, 0, 0, 0, 2,        // prog 100021, vers, proc
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // cred, verf: AUTH_NONE
            0, 0, 0, 9,                                      // args
        ];
        assert_eq!(bytes, expected);
        let call = decode_call(&bytes).unwrap();
        assert_eq!(call.header, header());
        assert_eq!(call.args, [0, 0, 0, 9]);
    }

    #[test]
    fn short_header_is_unreadable() {
        let bytes = call_bytes(&header(), &[]);
        for len in 0..24 {
            assert!(
                matches!(decode_call(&bytes[..len]), Err(CallError::Unreadable(_))),
                "len {len}"
            );
            assert_eq!(decode_call(&bytes[..len]).unwrap_err().reply(), None);
        }
    }

    #[test]
    fn unknown_message_type_is_unreadable() {
        let mut bytes = call_bytes(&header(), &[]);
        bytes[7] = 2;
        assert_eq!(
            decode_call(&bytes),
            Err(CallError::Unreadable(XdrError::BadEnum(2)))
        );
    }

    #[test]
    fn wrong_rpc_version_is_answered_with_rpc_mismatch() {
        let mut bytes = call_bytes(&header(), &[]);
        bytes[11] = 3;
        // Even a truncated rest does not matter: the version is known to be wrong.
        let err = decode_call(&bytes[..12]).unwrap_err();
        assert_eq!(
            err,
            CallError::RpcMismatch {
                xid: 0x1234_5678,
                rpcvers: 3
            }
        );
        assert_eq!(
            err.reply(),
            Some(Reply::denied(
                0x1234_5678,
                RejectStat::RpcMismatch { low: 2, high: 2 }
            ))
        );
    }

    #[test]
    fn truncated_credential_is_answered_with_badcred() {
        let bytes = call_bytes(&header(), &[]);
        let err = decode_call(&bytes[..28]).unwrap_err();
        assert!(matches!(
            err,
            CallError::BadCred {
                xid: 0x1234_5678,
                program: 100_021,
                version: 4,
                procedure: 2,
                error: XdrError::Truncated
            }
        ));
        assert_eq!(
            err.reply().unwrap().body,
            ReplyBody::Denied(RejectStat::AuthError(AuthStat::BadCred))
        );
    }

    #[test]
    fn truncated_verifier_is_answered_with_badverf() {
        let bytes = call_bytes(&header(), &[]);
        let err = decode_call(&bytes[..36]).unwrap_err();
        assert!(matches!(err, CallError::BadVerf { .. }));
        assert_eq!(
            err.reply().unwrap().body,
            ReplyBody::Denied(RejectStat::AuthError(AuthStat::BadVerf))
        );
    }

    #[test]
    fn a_reply_is_not_a_call() {
        let mut out = Vec::new();
        encode_reply(&Reply::success(5, vec![]), &mut out).unwrap();
        assert_eq!(decode_call(&out), Err(CallError::NotACall { xid: 5 }));
        assert_eq!(peek_message(&out), Ok((5, MessageType::Reply)));
        assert_eq!(
            decode_reply(&call_bytes(&header(), &[])),
            Err(XdrError::BadEnum(0))
        );
    }

    #[test]
    fn every_reply_kind_has_its_wire_form() {
        let v = |words: &[u32]| -> Vec<u8> { words.iter().flat_map(|w| w.to_be_bytes()).collect() };
        let cases: [(AcceptStat, Vec<u8>); 6] = [
            (
                AcceptStat::Success {
                    results: v(&[0, 7]),
                },
                v(&[0, 0, 7]),
            ),
            (AcceptStat::ProgUnavail, v(&[1])),
            (AcceptStat::ProgMismatch { low: 1, high: 4 }, v(&[2, 1, 4])),
            (AcceptStat::ProcUnavail, v(&[3])),
            (AcceptStat::GarbageArgs, v(&[4])),
            (AcceptStat::SystemErr, v(&[5])),
        ];
        for (stat, tail) in cases {
            let mut out = Vec::new();
            encode_reply(&Reply::accepted(9, stat.clone()), &mut out).unwrap();
            // xid, REPLY, MSG_ACCEPTED, verf AUTH_NONE (flavour, length).
            let mut expected = v(&[9, 1, 0, 0, 0]);
            expected.extend_from_slice(&tail);
            assert_eq!(out, expected, "{stat:?}");
            assert_eq!(decode_reply(&out), Ok(Reply::accepted(9, stat)));
        }
        let denied = [
            (
                RejectStat::RpcMismatch { low: 2, high: 2 },
                v(&[9, 1, 1, 0, 2, 2]),
            ),
            (
                RejectStat::AuthError(AuthStat::TooWeak),
                v(&[9, 1, 1, 1, 5]),
            ),
        ];
        for (reject, expected) in denied {
            let mut out = Vec::new();
            encode_reply(&Reply::denied(9, reject), &mut out).unwrap();
            assert_eq!(out, expected);
            assert_eq!(decode_reply(&out), Ok(Reply::denied(9, reject)));
        }
    }

    #[test]
    fn success_header_then_results_equals_success_reply() {
        let mut split = Vec::new();
        encode_success_header(3, &Auth::None, &mut split).unwrap();
        split.extend_from_slice(&[0, 0, 0, 1]);
        let mut whole = Vec::new();
        encode_reply(&Reply::success(3, vec![0, 0, 0, 1]), &mut whole).unwrap();
        assert_eq!(split, whole);
    }

    #[test]
    fn reply_with_trailing_bytes_is_refused() {
        let mut out = Vec::new();
        encode_reply(&Reply::accepted(1, AcceptStat::GarbageArgs), &mut out).unwrap();
        out.extend_from_slice(&[0; 4]);
        assert_eq!(decode_reply(&out), Err(XdrError::TrailingBytes(4)));
    }

    impl Arbitrary for Auth {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 3 {
                0 => Auth::None,
                1 => Auth::Sys(AuthSys {
                    stamp: u32::arbitrary(g),
                    machine_name: bytes_up_to(g, 255),
                    uid: u32::arbitrary(g),
                    gid: u32::arbitrary(g),
                    gids: (0..usize::arbitrary(g) % 17)
                        .map(|_| u32::arbitrary(g))
                        .collect(),
                }),
                _ => Auth::Other {
                    flavor: u32::arbitrary(g).max(2),
                    body: bytes_up_to(g, 400),
                },
            }
        }
    }

    fn bytes_up_to(g: &mut Gen, max: usize) -> Vec<u8> {
        let mut v = Vec::<u8>::arbitrary(g);
        v.truncate(max);
        v
    }

    impl Arbitrary for CallHeader {
        fn arbitrary(g: &mut Gen) -> Self {
            CallHeader {
                xid: u32::arbitrary(g),
                program: u32::arbitrary(g),
                version: u32::arbitrary(g),
                procedure: u32::arbitrary(g),
                cred: Auth::arbitrary(g),
                verf: Auth::arbitrary(g),
            }
        }
    }

    impl Arbitrary for Reply {
        fn arbitrary(g: &mut Gen) -> Self {
            let xid = u32::arbitrary(g);
            let body = match u8::arbitrary(g) % 8 {
                0 => ReplyBody::Denied(RejectStat::RpcMismatch {
                    low: u32::arbitrary(g),
                    high: u32::arbitrary(g),
                }),
                1 => ReplyBody::Denied(RejectStat::AuthError(*g.choose(&AuthStat::ALL).unwrap())),
                n => ReplyBody::Accepted {
                    verf: Auth::arbitrary(g),
                    stat: match n {
                        2 => AcceptStat::Success {
                            results: Vec::arbitrary(g),
                        },
                        3 => AcceptStat::ProgUnavail,
                        4 => AcceptStat::ProgMismatch {
                            low: u32::arbitrary(g),
                            high: u32::arbitrary(g),
                        },
                        5 => AcceptStat::ProcUnavail,
                        6 => AcceptStat::GarbageArgs,
                        _ => AcceptStat::SystemErr,
                    },
                },
            };
            Reply { xid, body }
        }
    }

    quickcheck! {
        fn calls_round_trip(header: CallHeader, args: Vec<u8>) -> bool {
            let bytes = call_bytes(&header, &args);
            decode_call(&bytes) == Ok(Call { header, args: &args })
        }

        fn replies_round_trip(reply: Reply) -> bool {
            let mut out = Vec::new();
            encode_reply(&reply, &mut out).unwrap();
            decode_reply(&out) == Ok(reply)
        }

        fn decoding_arbitrary_bytes_never_panics(bytes: Vec<u8>) -> bool {
            let _ = decode_reply(&bytes);
            match decode_call(&bytes) {
                Ok(_) => true,
                Err(e) => e.reply().is_none() == matches!(
                    e, CallError::Unreadable(_) | CallError::NotACall { .. }
                ),
            }
        }

        fn decoding_arbitrary_bytes_after_a_valid_start_never_panics(
            header: CallHeader, tail: Vec<u8>, cut: usize
        ) -> bool {
            let mut bytes = call_bytes(&header, &[]);
            bytes.truncate(cut % (bytes.len() + 1));
            bytes.extend_from_slice(&tail);
            let _ = decode_call(&bytes);
            true
        }
    }
}
