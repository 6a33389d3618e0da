//! Metric labels for NLM procedures and statuses, formatted once per process rather than per reply.

use std::sync::OnceLock;

use crate::nlm::{self, NlmProc, Stat};

/// `stat`'s metrics label (`{stat:?}` in lower case).
pub(crate) fn status_name(stat: Stat) -> &'static str {
    static NAMES: OnceLock<Vec<(Stat, String)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        Stat::ALL
            .iter()
            .map(|&s| (s, format!("{s:?}").to_lowercase()))
            .collect()
    });
    names
        .iter()
        .find(|(s, _)| *s == stat)
        .map_or("unknown", |(_, n)| n)
}

/// `procedure`'s metrics label (`{procedure:?}` in lower case).
pub(crate) fn proc_label(procedure: NlmProc) -> &'static str {
    static NAMES: OnceLock<Vec<(NlmProc, String)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        NlmProc::ALL
            .iter()
            .map(|&p| (p, format!("{p:?}").to_lowercase()))
            .collect()
    });
    names
        .iter()
        .find(|(p, _)| *p == procedure)
        .map_or("unknown", |(_, n)| n)
}

/// Whether `procedure` is one of the `*_MSG` calls, answered at once with an empty reply and later
/// with a `*_RES` call (Linux lockd's nlmsvc_callback: the _MSG procedures encode void).
pub(crate) fn is_msg(procedure: NlmProc) -> bool {
    matches!(
        procedure,
        NlmProc::TestMsg
            | NlmProc::LockMsg
            | NlmProc::CancelMsg
            | NlmProc::UnlockMsg
            | NlmProc::GrantedMsg
    )
}

/// The status most calls of `procedure` are answered with: its request series exists from the
/// start with this label (other statuses appear with their first call).
pub(crate) fn usual_status(procedure: NlmProc) -> &'static str {
    match procedure {
        _ if is_msg(procedure) => "accepted",
        // A server has no blocked request of its own to match (see `front_end.rs`).
        NlmProc::Granted => status_name(Stat::Denied),
        p if p.reply_shape() == nlm::ReplyShape::Void => "ok",
        _ => status_name(Stat::Granted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_lower_case_names() {
        assert_eq!(proc_label(NlmProc::LockMsg), "lockmsg");
        assert_eq!(status_name(Stat::DeniedNolocks), "deniednolocks");
        assert_eq!(usual_status(NlmProc::Lock), "granted");
        assert_eq!(usual_status(NlmProc::LockMsg), "accepted");
        assert_eq!(usual_status(NlmProc::Granted), "denied");
        assert_eq!(usual_status(NlmProc::FreeAll), "ok");
    }
}
