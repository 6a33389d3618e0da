//! The tiny host's wire format: one command per line, decoded into an `Event` (what a network host's
//! protocol layer does with NLM calls). Nothing here knows a lock rule.
//!
//! ```text
//! lock CLIENT/OWNER FILE OFFSET LENGTH r|w [wait]    length 0 = to the end of the file
//! unlock CLIENT/OWNER FILE OFFSET LENGTH
//! test CLIENT/OWNER FILE OFFSET LENGTH r|w
//! cancel CLIENT/OWNER FILE OFFSET LENGTH r|w
//! free CLIENT                                        NLM_FREE_ALL: everything of CLIENT goes
//! ok WAITER | fail WAITER                            the client's answer to a GRANTED callback
//! sleep MS                                           let time pass (timers still fire)
//! ```

use brlock_core::*;

/// What one input line asks for.
pub enum Command {
    /// Hand this event to the core.
    Event(Event),
    /// Let this much time pass before the next line (timers still fire).
    Sleep(Duration),
}

/// Reads one line. `line_no` becomes the request's id, so that the reply can name the line it
/// answers (a network host would map the id to a connection and call instead). Blank lines and `#`
/// comments are `None`.
pub fn parse(line_no: u64, line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let word = |i: usize| words.get(i).copied().ok_or("too few words");
    let number = |i: usize| -> Result<u64, String> {
        let w = word(i)?;
        w.parse().map_err(|_| format!("{w:?} is not a number"))
    };
    let verb = match words.first() {
        None => return Ok(None),
        Some(w) if w.starts_with('#') => return Ok(None),
        Some(w) => *w,
    };
    let event = match verb {
        "sleep" => return Ok(Some(Command::Sleep(Duration::from_millis(number(1)?)))),
        "ok" => callback(number(1)?, CallbackResult::Delivered),
        "fail" => callback(number(1)?, CallbackResult::Failed),
        "free" => Event::FreeAll {
            client: ClientId::from(word(1)?),
        },
        "lock" | "unlock" | "test" | "cancel" => {
            let (client, owner) = word(1)?.split_once('/').ok_or("owner is CLIENT/OWNER")?;
            let (client, owner) = (ClientId::from(client), OwnerId::from(owner));
            let (file, range) = (FileId::from(word(2)?), Range::new(number(3)?, number(4)?));
            let request = RequestId(line_no);
            if verb == "unlock" {
                let event = Event::Unlock {
                    request,
                    client,
                    owner,
                    file,
                    range,
                };
                return Ok(Some(Command::Event(event)));
            }
            let kind = match words.get(5) {
                Some(&"r") => LockKind::Shared,
                Some(&"w") => LockKind::Exclusive,
                _ => return Err("kind is r or w".into()),
            };
            match (verb, words.get(6)) {
                ("lock", wait @ (None | Some(&"wait"))) => Event::Lock {
                    request,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                    wait: wait.is_some(),
                    reclaim: false,
                    cookie: Vec::new(),
                },
                ("lock", Some(other)) => {
                    return Err(format!("{other:?}: only \"wait\" may follow the kind"));
                }
                ("test", None) => Event::Test {
                    request,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                },
                ("cancel", None) => Event::Cancel {
                    request,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                },
                _ => return Err("too many words".into()),
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Some(Command::Event(event)))
}

fn callback(waiter: u64, result: CallbackResult) -> Event {
    let waiter = WaiterId(waiter);
    Event::CallbackOutcome { waiter, result }
}
