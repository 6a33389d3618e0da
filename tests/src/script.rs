//! Scenario scripts in `conformance/rpcgen/nlm4_client`'s command language, with the
//! expected answer under each command:
//!
//! ```text
//! # exclusive conflict
//! lock hostA 1 ownerA file1 1 0 100 0 0 1
//!   -> granted
//! test hostB 7 ownerC file1 1 50 1
//!   -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=100
//! ```
//!
//! The same script runs through [`execute`] (the test kit's client, any NLM version, TCP or
//! UDP) and through the independent rpcgen client (v4), so both must print the same answers.
//! [`check`] runs a script and reports every mismatch at once, with the whole transcript.

use std::fmt::Write as _;

use brlock_native::nlm::{
    self, CancelArgs, Lock, LockArgs, NLM_PROGRAM, NlmCall, NlmReply, NotifyArgs, Res, Share,
    ShareAccess, ShareArgs, ShareMode, ShareRes, Stat, TestArgs, TestRes, UnlockArgs,
};

use brlock_testkit::client::{NlmClient, success_results};

/// One command and the answer the script expects (`None`: any answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the command in the script.
    pub line: usize,
    pub command: String,
    pub expected: Option<String>,
}

/// Parses a script: commands, each optionally followed by a `-> answer` line. Blank lines
/// and `#` comments are skipped.
pub fn parse(script: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (i, raw) in script.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(answer) = line.strip_prefix("->") {
            let step = steps
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: answer before any command", i + 1));
            assert!(
                step.expected.is_none(),
                "line {}: two answers for one command",
                i + 1
            );
            step.expected = Some(answer.trim().to_string());
        } else {
            steps.push(Step {
                line: i + 1,
                command: line.to_string(),
                expected: None,
            });
        }
    }
    steps
}

/// Replaces every `$NAME` in `script` by its value, e.g. a real file handle for `$FH`.
pub fn substitute(script: &str, vars: &[(&str, &str)]) -> String {
    let mut out = script.to_string();
    // Longest names first so `$FH2` is not eaten by `$FH`.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in vars {
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// Compares answers with a script's expectations; panics listing every mismatch and the
/// whole transcript. `answers[i]` answers `steps[i]`.
pub fn assert_answers(what: &str, steps: &[Step], answers: &[String]) {
    let mut transcript = String::new();
    let mut mismatches = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let actual = answers.get(i).map(String::as_str).unwrap_or("<no answer>");
        let _ = writeln!(transcript, "{}\n  -> {actual}", step.command);
        if let Some(expected) = &step.expected
            && expected != actual
        {
            let _ = writeln!(transcript, "  !! expected: {expected}");
            mismatches.push(format!(
                "line {}: `{}`\n    expected: {expected}\n    got:      {actual}",
                step.line, step.command
            ));
        }
    }
    if answers.len() > steps.len() {
        mismatches.push(format!(
            "{} extra answer lines: {:?}",
            answers.len() - steps.len(),
            &answers[steps.len()..]
        ));
    }
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} answers differ:\n{}\n\nfull transcript:\n{transcript}",
        mismatches.len(),
        steps.len(),
        mismatches.join("\n")
    );
}

/// Runs `script` through `client` and asserts every answer.
pub fn check(what: &str, client: &mut NlmClient, script: &str) {
    let steps = parse(script);
    let answers: Vec<String> = steps.iter().map(|s| execute(client, &s.command)).collect();
    assert_answers(what, &steps, &answers);
}

/// Bytes of an `OH`/`FH` argument: the text itself, or `hex:…`.
pub fn bytes_arg(text: &str) -> Result<Vec<u8>, String> {
    match text.strip_prefix("hex:") {
        None => Ok(text.as_bytes().to_vec()),
        Some(hex) => {
            if hex.len() % 2 != 0 {
                return Err(format!("odd hex length in {text}"));
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string()))
                .collect()
        }
    }
}

/// How nlm4_client prints bytes: text when all printable without spaces, else `hex:`.
pub fn show_bytes(bytes: &[u8]) -> String {
    let printable = !bytes.is_empty()
        && bytes.iter().all(|&b| b > b' ' && b < 0x7f)
        && !bytes.starts_with(b"hex:");
    if printable {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        let mut s = String::from("hex:");
        for b in bytes {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// nlm4_client's name for a status.
pub fn stat_name(stat: Stat) -> &'static str {
    match stat {
        Stat::Granted => "granted",
        Stat::Denied => "denied",
        Stat::DeniedNolocks => "denied_nolocks",
        Stat::Blocked => "blocked",
        Stat::DeniedGracePeriod => "denied_grace_period",
        Stat::Deadlck => "deadlck",
        Stat::Rofs => "rofs",
        Stat::StaleFh => "stale_fh",
        Stat::Fbig => "fbig",
        Stat::Failed => "failed",
    }
}

/// Executes one command with `client` and returns the answer line nlm4_client would print.
pub fn execute(client: &mut NlmClient, command: &str) -> String {
    match execute_inner(client, command) {
        Ok(answer) => answer,
        Err(e) => e,
    }
}

fn execute_inner(client: &mut NlmClient, command: &str) -> Result<String, String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let usage = || format!("usage-error: {}", words.first().copied().unwrap_or(""));
    let num = |i: usize| -> Result<u64, String> {
        words
            .get(i)
            .and_then(|w| w.parse::<u64>().ok())
            .ok_or_else(usage)
    };
    let flag = |i: usize| -> Result<bool, String> {
        match words.get(i) {
            Some(&"0") => Ok(false),
            Some(&"1") => Ok(true),
            _ => Err(usage()),
        }
    };
    let bytes = |i: usize| -> Result<Vec<u8>, String> {
        bytes_arg(words.get(i).ok_or_else(usage)?).map_err(|_| usage())
    };
    let svid = |i: usize| -> Result<u32, String> { u32::try_from(num(i)?).map_err(|_| usage()) };
    let lock_at = |c: usize, s: usize, oh: usize, fh: usize, off: usize| -> Result<Lock, String> {
        Ok(Lock {
            caller_name: bytes(c)?,
            svid: svid(s)?,
            oh: bytes(oh)?,
            fh: bytes(fh)?,
            offset: num(off)?,
            len: num(off + 1)?,
        })
    };
    let arity = |n: usize| -> Result<(), String> {
        if words.len() == n {
            Ok(())
        } else {
            Err(usage())
        }
    };
    let cookie = client.cookie();
    let call = match *words.first().ok_or_else(usage)? {
        "null" => {
            arity(1)?;
            NlmCall::Null
        }
        "sleep" => {
            arity(2)?;
            std::thread::sleep(std::time::Duration::from_millis(num(1)?));
            return Ok("ok".into());
        }
        "test" => {
            arity(8)?;
            NlmCall::Test(TestArgs {
                cookie: cookie.clone(),
                exclusive: flag(5)?,
                lock: lock_at(1, 2, 3, 4, 6)?,
            })
        }
        name @ ("lock" | "nm_lock") => {
            arity(11)?;
            let args = LockArgs {
                cookie: cookie.clone(),
                exclusive: flag(5)?,
                lock: lock_at(1, 2, 3, 4, 6)?,
                block: flag(8)?,
                reclaim: flag(9)?,
                state: u32::try_from(num(10)?).map_err(|_| usage())?,
            };
            if name == "lock" {
                NlmCall::Lock(args)
            } else {
                NlmCall::NmLock(args)
            }
        }
        "cancel" => {
            arity(9)?;
            NlmCall::Cancel(CancelArgs {
                cookie: cookie.clone(),
                exclusive: flag(5)?,
                lock: lock_at(1, 2, 3, 4, 6)?,
                block: flag(8)?,
            })
        }
        "unlock" => {
            arity(7)?;
            NlmCall::Unlock(UnlockArgs {
                cookie: cookie.clone(),
                lock: lock_at(1, 2, 3, 4, 5)?,
            })
        }
        name @ ("share" | "unshare") => {
            arity(if name == "share" { 7 } else { 6 })?;
            let mode = u32::try_from(num(4)?)
                .ok()
                .and_then(ShareMode::from_wire)
                .ok_or_else(usage)?;
            let access = u32::try_from(num(5)?)
                .ok()
                .and_then(ShareAccess::from_wire)
                .ok_or_else(usage)?;
            let args = ShareArgs {
                cookie: cookie.clone(),
                share: Share {
                    caller_name: bytes(1)?,
                    oh: bytes(2)?,
                    fh: bytes(3)?,
                    mode,
                    access,
                },
                reclaim: if name == "share" { flag(6)? } else { false },
            };
            if name == "share" {
                NlmCall::Share(args)
            } else {
                NlmCall::Unshare(args)
            }
        }
        "free_all" => {
            arity(3)?;
            NlmCall::FreeAll(NotifyArgs {
                name: bytes(1)?,
                state: u32::try_from(num(2)?).map_err(|_| usage())?,
            })
        }
        _ => return Err(usage()),
    };
    let version = client.version;
    let mut sized = call.clone();
    if let Some(fh) = sized.fh_mut() {
        *fh = nlm::fh_for(version, fh);
    }
    let mut args = Vec::new();
    nlm::encode_call(version, &sized, &mut args).map_err(|e| format!("encode-error: {e}"))?;
    let procedure = call.procedure();
    let reply = client
        .rpc
        .call_raw(NLM_PROGRAM, version as u32, procedure as u32, &args)
        .map_err(|e| format!("rpc-error: {e}"))?;
    let results = success_results(reply).map_err(|e| format!("rpc-error: {e}"))?;
    let reply = nlm::decode_reply(version, procedure, &results)
        .map_err(|e| format!("rpc-error: cannot decode {procedure:?} results: {e}"))?;
    let check_cookie = |c: &[u8]| -> Result<(), String> {
        if c == cookie.as_slice() {
            Ok(())
        } else {
            Err("cookie-mismatch".into())
        }
    };
    Ok(match reply {
        NlmReply::Void => "ok".into(),
        NlmReply::Res(Res { cookie: c, stat }) => {
            check_cookie(&c)?;
            stat_name(stat).into()
        }
        NlmReply::Share(ShareRes {
            cookie: c, stat, ..
        }) => {
            check_cookie(&c)?;
            stat_name(stat).into()
        }
        NlmReply::Test(TestRes {
            cookie: c,
            stat,
            holder,
        }) => {
            check_cookie(&c)?;
            match (stat, holder) {
                (Stat::Denied, Some(h)) => format!(
                    "denied holder excl={} svid={} oh={} offset={} len={}",
                    u8::from(h.exclusive),
                    // nlm4_client prints svid as a signed 32-bit number.
                    h.svid as i32,
                    show_bytes(&h.oh),
                    h.offset,
                    h.len
                ),
                (stat, _) => stat_name(stat).into(),
            }
        }
    })
}
