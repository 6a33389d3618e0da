//! The JavaScript API. Values cross as plain JS objects in the trace format's JSON shapes (ids as text
//! or `0x…` hex, events and actions as in a trace file); times that go *in* are `BigInt` (Rust `u64`).
//! An integer in a returned object that a JS number cannot hold exactly (above 2^53 − 1, such as an
//! offset of 9007199254740993) arrives as its decimal string, so nothing is rounded on the way out;
//! `BigInt(x)` reads either form. Events going in as JSON text keep every digit. Every failure is a
//! thrown `Error` carrying the simulator's or the core's message.

use brlock_core::{Config, Event, FileId, Instant, TraceStep};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::{Error, Simulator, examples};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = JSON, js_name = parse, catch)]
    fn json_parse(text: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = JSON, js_name = stringify, catch)]
    fn json_stringify(value: &JsValue) -> Result<JsValue, JsValue>;
}

impl From<Error> for JsValue {
    fn from(error: Error) -> JsValue {
        JsError::new(&error.message).into()
    }
}

fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    let text = js_json(value).map_err(|e| Error::new(e.to_string()))?;
    json_parse(&text)
}

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `value` as JSON for `JSON.parse`, with every integer beyond ±(2^53 − 1) written as a decimal string:
/// `JSON.parse` would round it to the nearest double (9007199254740993 to …992).
pub fn js_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        ExactIntegers::default(),
    ))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// serde_json's compact output, but integers a JS number cannot hold exactly are quoted. Inside a
/// string (an integer map key is written as one) digits stay bare, or they would be quoted twice.
#[derive(Default)]
struct ExactIntegers {
    in_string: bool,
}

impl ExactIntegers {
    fn integer<W: ?Sized + std::io::Write>(
        &self,
        writer: &mut W,
        digits: impl std::fmt::Display,
        exact_in_js: bool,
    ) -> std::io::Result<()> {
        if exact_in_js || self.in_string {
            write!(writer, "{digits}")
        } else {
            write!(writer, "\"{digits}\"")
        }
    }
}

impl serde_json::ser::Formatter for ExactIntegers {
    fn begin_string<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.in_string = true;
        writer.write_all(b"\"")
    }
    fn end_string<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.in_string = false;
        writer.write_all(b"\"")
    }
    fn write_u64<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: u64,
    ) -> std::io::Result<()> {
        self.integer(writer, value, value <= MAX_SAFE_INTEGER)
    }
    fn write_i64<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: i64,
    ) -> std::io::Result<()> {
        self.integer(writer, value, value.unsigned_abs() <= MAX_SAFE_INTEGER)
    }
    fn write_u128<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: u128,
    ) -> std::io::Result<()> {
        self.integer(writer, value, value <= u128::from(MAX_SAFE_INTEGER))
    }
    fn write_i128<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: i128,
    ) -> std::io::Result<()> {
        self.integer(
            writer,
            value,
            value.unsigned_abs() <= u128::from(MAX_SAFE_INTEGER),
        )
    }
}

/// A JS object, or a string holding JSON, as the JSON text serde reads.
fn json_text(value: &JsValue, what: &str) -> Result<String, JsValue> {
    if let Some(text) = value.as_string() {
        return Ok(text);
    }
    json_stringify(value)?
        .as_string()
        .ok_or_else(|| Error::new(format!("{what}: not representable as JSON")).into())
}

fn from_js<T: serde::de::DeserializeOwned>(value: &JsValue, what: &str) -> Result<T, JsValue> {
    let text = json_text(value, what)?;
    serde_json::from_str(&text).map_err(|e| Error::new(format!("{what}: {e}")).into())
}

#[derive(Serialize)]
struct StepView<'a> {
    now: Instant,
    event: &'a Event,
    actions: &'a [brlock_core::Action],
    note: &'a str,
}

/// An `actions` message of `/events`: `{"step":N,"actions":[…]}`, the actions kept as text.
#[derive(serde::Deserialize)]
struct ServerActions {
    actions: Box<serde_json::value::RawValue>,
}

#[derive(Serialize)]
struct HeaderView<'a> {
    brlock_trace: u32,
    config: &'a Config,
    epoch: u64,
    start: Instant,
    restore: &'a Option<Vec<brlock_core::LockRecord>>,
    snapshot: bool,
}

#[derive(Serialize)]
struct StepJson<'a> {
    now: Instant,
    event: &'a Event,
    actions: &'a [brlock_core::Action],
}

/// The core behind a trace that can be extended, loaded, downloaded and looked at from any step.
#[wasm_bindgen(js_name = Simulator)]
pub struct WasmSimulator {
    inner: Simulator,
}

#[wasm_bindgen(js_class = Simulator)]
impl WasmSimulator {
    /// `new Simulator(config?)`: `config` is an object or JSON text in the trace header's `config`
    /// shape; missing fields take brlock's defaults.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Result<WasmSimulator, JsValue> {
        let config: Config = if config.is_undefined() || config.is_null() {
            Config::default()
        } else {
            from_js(&config, "config")?
        };
        Ok(Self {
            inner: Simulator::new(config),
        })
    }

    /// A simulator over a named profile: "brlock", "linux", "ganesha" or "dittofs".
    #[wasm_bindgen(js_name = fromProfile)]
    pub fn from_profile(name: &str) -> Result<WasmSimulator, JsValue> {
        Ok(Self {
            inner: Simulator::from_profile(name)?,
        })
    }

    /// Loads a JSON-lines trace, standing before its first step.
    #[wasm_bindgen(js_name = fromTrace)]
    pub fn from_trace(text: &str) -> Result<WasmSimulator, JsValue> {
        Ok(Self {
            inner: Simulator::from_jsonl(text)?,
        })
    }

    /// Loads a built-in example (see `Simulator.examples()`).
    pub fn example(name: &str) -> Result<WasmSimulator, JsValue> {
        Ok(Self {
            inner: Simulator::example(name)?,
        })
    }

    /// `[{name, title}]` of the built-in examples.
    pub fn examples() -> Result<JsValue, JsValue> {
        to_js(&examples::EXAMPLES[..])
    }

    /// The text of a built-in example, as its `.jsonl` file holds it.
    #[wasm_bindgen(js_name = exampleText)]
    pub fn example_text(name: &str) -> Result<String, JsValue> {
        Ok(examples::find(name)?.text.to_string())
    }

    /// Names of the configuration profiles.
    pub fn profiles() -> Vec<String> {
        brlock_core::Profile::ALL
            .iter()
            .map(|p| p.name().to_string())
            .collect()
    }

    /// Runs `event` at `now` after the current step, dropping any later ones; returns its actions.
    /// `event` is an object as in a trace (`{lock: {...}}`) or JSON text (`'"tick"'`, `'{"lock":…}'`);
    /// JSON text keeps offsets above 2^53 exact.
    pub fn step(&mut self, now: u64, event: JsValue) -> Result<JsValue, JsValue> {
        let event: Event = from_js(&event, "event")?;
        let actions = self.inner.step(Instant::from_millis(now), event)?;
        to_js(&actions)
    }

    /// Moves to just after step `position` (0 = before the first step).
    pub fn seek(&mut self, position: u32) -> Result<(), JsValue> {
        Ok(self.inner.seek(position as usize)?)
    }

    /// Steps forward one event; false at the end.
    pub fn forward(&mut self) -> Result<bool, JsValue> {
        if self.inner.position() == self.inner.len() {
            return Ok(false);
        }
        self.inner.seek(self.inner.position() + 1)?;
        Ok(true)
    }

    /// Steps back one event; false at the start.
    pub fn back(&mut self) -> Result<bool, JsValue> {
        if self.inner.position() == 0 {
            return Ok(false);
        }
        self.inner.seek(self.inner.position() - 1)?;
        Ok(true)
    }

    /// How many steps are applied (0 = none).
    #[wasm_bindgen(getter)]
    pub fn position(&self) -> u32 {
        self.inner.position() as u32
    }

    /// How many steps the trace has.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.inner.len() as u32
    }

    /// The latest `now` the core has seen, in ms.
    pub fn now(&self) -> u64 {
        self.inner.core().now().as_millis()
    }

    /// When the core next wants a tick, if ever.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.inner.core().poll_timeout().map(Instant::as_millis)
    }

    /// `[{now, event, actions, note}]` for every step of the trace, applied or not.
    pub fn steps(&self) -> Result<JsValue, JsValue> {
        let steps: Vec<StepView> = self
            .inner
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| StepView {
                now: s.now,
                event: &s.event,
                actions: self.inner.actions(i).unwrap_or(&[]),
                note: self.inner.note(i),
            })
            .collect();
        to_js(&steps)
    }

    /// Step `index` (counting from 0) as pretty-printed JSON `{now, event, actions}`, every number
    /// exact, for showing it as the trace format spells it.
    #[wasm_bindgen(js_name = stepJson)]
    pub fn step_json(&self, index: u32) -> Result<String, JsValue> {
        let index = index as usize;
        let step = self.inner.steps().get(index).ok_or_else(|| {
            Error::new(format!(
                "no step {index}: the trace has {} steps",
                self.inner.len()
            ))
        })?;
        let view = StepJson {
            now: step.now,
            event: &step.event,
            actions: self.inner.actions(index).unwrap_or(&[]),
        };
        serde_json::to_string_pretty(&view).map_err(|e| Error::new(e.to_string()).into())
    }

    /// The actions of building the core (a restore's persists), before the first step.
    #[wasm_bindgen(js_name = initialActions)]
    pub fn initial_actions(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.initial_actions())
    }

    /// The trace header: format version, config, epoch, start, restore, and `snapshot`: whether the
    /// trace starts from a running core's state (its body stays in Rust: it can be big).
    pub fn header(&self) -> Result<JsValue, JsValue> {
        let h = self.inner.header();
        to_js(&HeaderView {
            brlock_trace: h.brlock_trace,
            config: &h.config,
            epoch: h.epoch,
            start: h.start,
            restore: &h.restore,
            snapshot: h.snapshot.is_some(),
        })
    }

    /// Appends a step from a live server's `/events` stream: `step` is its `step` message (a trace
    /// step line), `actions` its `actions` message (`{"step":N,"actions":[…]}`). Throws when the
    /// page's core gives other actions than the server's. Returns the new step as `steps()` lists it.
    pub fn follow(&mut self, step: &str, actions: &str) -> Result<JsValue, JsValue> {
        let parsed: TraceStep = serde_json::from_str(step)
            .map_err(|e| Error::new(format!("step from the server: {e}")))?;
        // Compared as the JSON text both sides write (serde_json, compact): the page need not
        // carry the code to read actions back.
        let expected: ServerActions = serde_json::from_str(actions)
            .map_err(|e| Error::new(format!("actions from the server: {e}")))?;
        self.inner.follow(parsed, |mine| {
            serde_json::to_string(mine).is_ok_and(|text| text == expected.actions.get())
        })?;
        let index = self.inner.len() - 1;
        let step = &self.inner.steps()[index];
        to_js(&StepView {
            now: step.now,
            event: &step.event,
            actions: self.inner.actions(index).unwrap_or(&[]),
            note: self.inner.note(index),
        })
    }

    /// The comment lines before the trace header.
    pub fn description(&self) -> String {
        self.inner.description().to_string()
    }

    /// The whole trace in the JSON-lines format, comments included.
    #[wasm_bindgen(js_name = toJsonl)]
    pub fn to_jsonl(&self) -> String {
        self.inner.to_jsonl()
    }

    /// Files with locks, waiters or shares, in name order.
    pub fn files(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().files())
    }

    /// Those files and every file the steps so far named, in name order.
    #[wasm_bindgen(js_name = filesSeen)]
    pub fn files_seen(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.files_seen())
    }

    /// `[{client, owner, kind, range, unreclaimed}]` in range order.
    #[wasm_bindgen(js_name = heldLocks)]
    pub fn held_locks(&self, file: &str) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().held_locks(&file_id(file)?))
    }

    /// `[{waiter, request, client, owner, kind, range, since}]` in queue order.
    pub fn waiters(&self, file: &str) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().waiters(&file_id(file)?))
    }

    /// Share reservations of a file.
    pub fn shares(&self, file: &str) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().shares(&file_id(file)?))
    }

    /// Granted waiters whose GRANTED callback is not yet confirmed.
    #[wasm_bindgen(js_name = pendingCallbacks)]
    pub fn pending_callbacks(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().pending_callbacks())
    }

    /// `[{waiter, file, from: {client, owner}, to: {client, owner}}]`.
    #[wasm_bindgen(js_name = waitForGraph)]
    pub fn wait_for_graph(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().wait_for_graph())
    }

    /// `{ends_at, remaining, expected, pending}` during the grace period, else null.
    pub fn grace(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().grace())
    }

    /// The core's counters and gauges.
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.core().stats())
    }

    /// The configuration in use.
    pub fn config(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.core().config())
    }
}

/// A file name as the page spells it: text, or `0x…` hex for binary handles (the ids' JSON form).
fn file_id(name: &str) -> Result<FileId, JsValue> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| Error::new(format!("file {name:?}: {e}")).into())
}
