//! NLM ↔ core translation, and nothing else: owners, ranges, share modes, statuses and the shape of
//! each procedure's answer. No lock semantics are decided here.

use brlock_core::{
    Holder as CoreHolder, LockKind, Outcome, OwnerId, Range, ShareMode as CoreShare,
};

use crate::nlm::{
    self, NlmCall, NlmProc, NlmReply, NlmVersion, ReplyShape, Res, ShareAccess, ShareMode,
    ShareRes, Stat, TestRes,
};

use super::outbound::Transport;

/// Marks an owner built from NLM fields, so a TEST holder can be decoded back to svid/oh.
const NLM_OWNER_TAG: &[u8] = b"nlm\0";

/// An NLM owner is (caller_name, svid, oh). Each part is length-prefixed so no two different triples
/// give the same bytes.
pub fn owner_id(caller_name: &[u8], svid: u32, oh: &[u8]) -> OwnerId {
    let mut b = Vec::with_capacity(NLM_OWNER_TAG.len() + 12 + caller_name.len() + oh.len());
    b.extend_from_slice(NLM_OWNER_TAG);
    b.extend_from_slice(&(caller_name.len() as u32).to_be_bytes());
    b.extend_from_slice(caller_name);
    b.extend_from_slice(&svid.to_be_bytes());
    b.extend_from_slice(&(oh.len() as u32).to_be_bytes());
    b.extend_from_slice(oh);
    OwnerId::new(b)
}

/// (caller_name, svid, oh) of an owner made by [`owner_id`]; `None` for any other owner.
fn take(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

pub fn parse_owner(owner: &OwnerId) -> Option<(Vec<u8>, u32, Vec<u8>)> {
    let rest = owner.as_bytes().strip_prefix(NLM_OWNER_TAG)?;
    let (len, rest) = take(rest, 4)?;
    let (caller, rest) = take(rest, u32::from_be_bytes(len.try_into().ok()?) as usize)?;
    let (svid, rest) = take(rest, 4)?;
    let (len, rest) = take(rest, 4)?;
    let (oh, rest) = take(rest, u32::from_be_bytes(len.try_into().ok()?) as usize)?;
    rest.is_empty().then(|| {
        (
            caller.to_vec(),
            u32::from_be_bytes(svid.try_into().expect("4 bytes")),
            oh.to_vec(),
        )
    })
}

/// The range a request names. v1/v3 offsets arrive widened from 32 bits; length 0 means "to end of
/// file" in every version. (Linux lockd reads v1/v3 offsets as signed and maps a negative end to EOF;
/// we read them unsigned, which agrees for every range a 32-bit client can lock.)
pub fn range(offset: u64, len: u64) -> Range {
    Range::new(offset, len)
}

pub fn kind(exclusive: bool) -> LockKind {
    if exclusive {
        LockKind::Exclusive
    } else {
        LockKind::Shared
    }
}

/// How a call is answered: the RPC reply to it, or, for a `*_MSG` call, the matching `*_RES` call.
#[derive(Debug)]
pub(crate) enum Answer {
    Reply(NlmReply),
    Res(NlmCall),
}

/// `stat` (and, for a TEST, the conflicting `holder`) in the shape `procedure` is answered with.
pub(crate) fn answer(
    procedure: NlmProc,
    cookie: Vec<u8>,
    stat: Stat,
    holder: Option<nlm::Holder>,
) -> Answer {
    let test = TestRes {
        cookie,
        stat,
        holder,
    };
    match procedure {
        NlmProc::TestMsg => Answer::Res(NlmCall::TestRes(test)),
        NlmProc::LockMsg => Answer::Res(NlmCall::LockRes(res_of(test))),
        NlmProc::CancelMsg => Answer::Res(NlmCall::CancelRes(res_of(test))),
        NlmProc::UnlockMsg => Answer::Res(NlmCall::UnlockRes(res_of(test))),
        NlmProc::GrantedMsg => Answer::Res(NlmCall::GrantedRes(res_of(test))),
        _ => Answer::Reply(match procedure.reply_shape() {
            ReplyShape::Test => NlmReply::Test(test),
            ReplyShape::Res => NlmReply::Res(res_of(test)),
            ReplyShape::Share => NlmReply::Share(ShareRes {
                cookie: test.cookie,
                stat,
                sequence: 0,
            }),
            ReplyShape::Void => NlmReply::Void,
        }),
    }
}

fn res_of(test: TestRes) -> Res {
    Res {
        cookie: test.cookie,
        stat: test.stat,
    }
}

/// XNFS's name for each outcome; the codec maps v4 statuses onto v1/v3.
pub fn stat(outcome: &Outcome) -> Stat {
    match outcome {
        Outcome::Granted => Stat::Granted,
        Outcome::Denied { .. } => Stat::Denied,
        Outcome::Blocked { .. } => Stat::Blocked,
        Outcome::Deadlock { .. } => Stat::Deadlck,
        Outcome::NoLocks { .. } => Stat::DeniedNolocks,
        Outcome::TooBig => Stat::Fbig,
        Outcome::DeniedGrace => Stat::DeniedGracePeriod,
        Outcome::NotReclaimable | Outcome::ShareDenied { .. } => Stat::Denied,
    }
}

/// Linux lockd's `NLM_OFFSET_MAX`: v1/v3 holders are clamped to it (`loff_t_to_s32` in
/// fs/lockd/xdr.c), since clients read the fields as signed 32-bit.
const NLM_OFFSET_MAX: u64 = 0x7fff_ffff;

/// The TEST holder as NLM reports it: svid and oh from an NLM owner, else svid 0 and the owner's bytes
/// (at most 1024) as oh. In v1/v3 offset and length are clamped to 0x7fffffff as Linux lockd does; a
/// range to end of file keeps length 0.
pub fn holder(version: NlmVersion, holder: &CoreHolder) -> nlm::Holder {
    let (svid, oh) = match parse_owner(&holder.owner) {
        Some((_, svid, oh)) => (svid, oh),
        None => {
            let raw = holder.owner.as_bytes();
            (0, raw[..raw.len().min(nlm::MAX_NETOBJ as usize)].to_vec())
        }
    };
    let (mut offset, mut len) = (holder.range.offset, holder.range.length);
    if !version.is_64bit() {
        offset = offset.min(NLM_OFFSET_MAX);
        len = len.min(NLM_OFFSET_MAX);
    }
    nlm::Holder {
        exclusive: holder.kind == LockKind::Exclusive,
        svid,
        oh,
        offset,
        len,
    }
}

/// NLM share `access` is what the opener does, `mode` what it denies others; the core takes the same
/// two as read/write sets.
pub fn share_modes(access: ShareAccess, mode: ShareMode) -> (CoreShare, CoreShare) {
    let access = match access {
        ShareAccess::None => CoreShare::None,
        ShareAccess::Read => CoreShare::Read,
        ShareAccess::Write => CoreShare::Write,
        ShareAccess::ReadWrite => CoreShare::Both,
    };
    let deny = match mode {
        ShareMode::DenyNone => CoreShare::None,
        ShareMode::DenyRead => CoreShare::Read,
        ShareMode::DenyWrite => CoreShare::Write,
        ShareMode::DenyReadWrite => CoreShare::Both,
    };
    (access, deny)
}

/// What the host keeps in the core's per-lock `cookie` to send the GRANTED callback later: the
/// version and transport the client used, and whether it asked via LOCK_MSG (→ GRANTED_MSG). The
/// callback's NLM cookie is not kept here: it is the core's `callback_cookie`, which nobody without
/// the host's key can forge (Linux lockd, too, sends a cookie of its own in GRANTED).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantCookie {
    pub version: NlmVersion,
    pub transport: Transport,
    pub msg: bool,
}

const GRANT_COOKIE_TAG: u8 = b'G';

impl GrantCookie {
    pub fn encode(&self) -> Vec<u8> {
        vec![
            GRANT_COOKIE_TAG,
            self.version as u8,
            matches!(self.transport, Transport::Udp) as u8,
            self.msg as u8,
        ]
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        match b {
            [GRANT_COOKIE_TAG, v, t, m] => Some(GrantCookie {
                version: NlmVersion::from_wire(u32::from(*v))?,
                transport: if *t == 1 {
                    Transport::Udp
                } else {
                    Transport::Tcp
                },
                msg: *m == 1,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brlock_core::ClientId;

    #[test]
    fn nlm_owners_are_unambiguous_and_decode_back() {
        let a = owner_id(b"ab", 1, b"c");
        let b = owner_id(b"a", 1, b"bc");
        assert_ne!(a, b);
        assert_eq!(parse_owner(&a), Some((b"ab".to_vec(), 1, b"c".to_vec())));
        assert_eq!(parse_owner(&OwnerId::from("smb:42")), None);
    }

    #[test]
    fn holders_are_clamped_for_32_bit_versions() {
        let h = CoreHolder {
            client: ClientId::from("h"),
            owner: owner_id(b"h", 7, b"oh"),
            kind: LockKind::Exclusive,
            range: Range::new(1 << 40, 1 << 33),
            queued: false,
        };
        let v1 = holder(NlmVersion::V1, &h);
        assert_eq!((v1.offset, v1.len, v1.svid), (0x7fff_ffff, 0x7fff_ffff, 7));
        let v4 = holder(NlmVersion::V4, &h);
        assert_eq!((v4.offset, v4.len), (1 << 40, 1 << 33));
        let eof = CoreHolder {
            range: Range::new(5, 0),
            owner: OwnerId::from("foreign"),
            ..h
        };
        let v3 = holder(NlmVersion::V3, &eof);
        assert_eq!(
            (v3.offset, v3.len, v3.svid, v3.oh),
            (5, 0, 0, b"foreign".to_vec())
        );
    }

    #[test]
    fn grant_cookies_round_trip() {
        let c = GrantCookie {
            version: NlmVersion::V3,
            transport: Transport::Udp,
            msg: true,
        };
        assert_eq!(GrantCookie::decode(&c.encode()), Some(c));
        assert_eq!(GrantCookie::decode(b"G\x03\x01\x01extra"), None);
    }
}
