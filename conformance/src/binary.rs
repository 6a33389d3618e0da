//! The compact form: postcard. A trace is the postcard encoding of [`Trace`] (so it starts with the
//! format version as a varint), outputs are a `Vec<StepOutput>`, and what the wasm guest returns is a
//! [`Replayed`].

use brlock_core::{TRACE_VERSION, Trace};

use crate::replay::{Replayed, StepOutput, replay};

pub fn encode_trace(trace: &Trace) -> Vec<u8> {
    postcard::to_allocvec(trace).expect("a trace always encodes")
}

/// Decodes a postcard trace; a wrong version is named as such rather than as garbage after it.
pub fn decode_trace(bytes: &[u8]) -> Result<Trace, String> {
    let version = postcard::take_from_bytes::<u32>(bytes)
        .map_err(|e| format!("postcard trace: {e}"))?
        .0;
    if version != TRACE_VERSION {
        return Err(format!(
            "postcard trace: unsupported trace version {version} (this core reads version {TRACE_VERSION})"
        ));
    }
    let (trace, rest) =
        postcard::take_from_bytes::<Trace>(bytes).map_err(|e| format!("postcard trace: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "postcard trace: {} bytes after the end of the trace",
            rest.len()
        ));
    }
    Ok(trace)
}

pub fn encode_outputs(outputs: &[StepOutput]) -> Vec<u8> {
    postcard::to_allocvec(outputs).expect("actions always encode")
}

pub fn decode_outputs(bytes: &[u8]) -> Result<Vec<StepOutput>, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("postcard outputs: {e}"))
}

pub fn encode_replayed(replayed: &Replayed) -> Vec<u8> {
    postcard::to_allocvec(replayed).expect("actions always encode")
}

pub fn decode_replayed(bytes: &[u8]) -> Result<Replayed, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("postcard replay result: {e}"))
}

/// Postcard trace in, postcard [`Replayed`] out: the whole job of the wasm guest, here so that native
/// code produces the very bytes the guest must match.
pub fn replay_postcard(trace: &[u8]) -> Vec<u8> {
    let replayed = decode_trace(trace).and_then(|trace| replay(&trace).map_err(|e| e.to_string()));
    encode_replayed(&replayed)
}
