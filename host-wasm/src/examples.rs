//! The built-in example traces. They live as plain `.jsonl` files in `web/examples/` (the page also
//! offers them for download) and are compiled in, so the page works without fetching them.

use crate::{Error, Simulator};

/// One example: its file name without `.jsonl`, a short title, and the trace text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Example {
    pub name: &'static str,
    pub title: &'static str,
    #[serde(skip)]
    pub text: &'static str,
}

macro_rules! example {
    ($name:literal, $title:literal) => {
        Example {
            name: $name,
            title: $title,
            text: include_str!(concat!("../web/examples/", $name, ".jsonl")),
        }
    };
}

pub const EXAMPLES: [Example; 7] = [
    example!("split", "Split: unlocking the middle of a range"),
    example!("upgrade", "Upgrade: shared to exclusive"),
    example!("deadlock", "Deadlock: a cycle is refused"),
    example!("fifo", "FIFO fairness: no overtaking"),
    example!("grace", "Grace period and reclaim"),
    example!("disconnect", "Disconnect TTL"),
    example!("shares", "Share reservations: access and deny"),
];

pub fn find(name: &str) -> Result<&'static Example, Error> {
    EXAMPLES.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = EXAMPLES.iter().map(|e| e.name).collect();
        Error::new(format!(
            "unknown example {name:?} (known: {})",
            names.join(", ")
        ))
    })
}

impl Simulator {
    /// A built-in example, loaded and standing before its first step.
    pub fn example(name: &str) -> Result<Simulator, Error> {
        Simulator::from_jsonl(find(name)?.text)
    }
}
