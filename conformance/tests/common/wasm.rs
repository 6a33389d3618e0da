#![allow(dead_code)] // Each test binary uses its own part of these helpers.
//! The wasm guest (`conformance/guest`) run under wasmtime: postcard trace in, postcard result out.

use std::path::PathBuf;

use wasmtime::{Engine, Instance, Memory, Module, Store, TypedFunc};

pub struct Guest {
    store: Store<()>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    replay: TypedFunc<(u32, u32), u64>,
}

/// Where `conformance/guest/build.sh` puts the module: `$CARGO_TARGET_DIR` when set, else the target
/// directory this test binary was built in (`TARGET/{debug,release}/deps/NAME`).
pub fn guest_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir),
        None => {
            let exe = std::env::current_exe().expect("test binary path");
            exe.ancestors()
                .nth(3)
                .expect("TARGET/profile/deps/binary")
                .to_path_buf()
        }
    };
    target.join("wasm32-unknown-unknown/release/brlock_guest.wasm")
}

impl Guest {
    pub fn load() -> Guest {
        let path = guest_path();
        assert!(
            path.exists(),
            "the wasm guest is missing at {}: build it first with `conformance/guest/build.sh` \
             (with the same CARGO_TARGET_DIR as this test)",
            path.display()
        );
        let engine = Engine::default();
        let module = Module::from_file(&engine, &path)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).expect("the guest needs no imports");
        let memory = instance
            .get_memory(&mut store, "memory")
            .expect("guest exports its memory");
        let alloc = instance
            .get_typed_func(&mut store, "brlock_alloc")
            .expect("brlock_alloc");
        let free = instance
            .get_typed_func(&mut store, "brlock_free")
            .expect("brlock_free");
        let replay = instance
            .get_typed_func(&mut store, "brlock_replay")
            .expect("brlock_replay");
        Guest {
            store,
            memory,
            alloc,
            free,
            replay,
        }
    }

    /// Replays a postcard trace in the guest; returns the postcard `Replayed` bytes.
    pub fn replay(&mut self, trace: &[u8]) -> Vec<u8> {
        let len = u32::try_from(trace.len()).expect("trace fits in wasm32");
        let ptr = self.alloc.call(&mut self.store, len).expect("brlock_alloc");
        self.memory
            .write(&mut self.store, ptr as usize, trace)
            .expect("trace fits in guest memory");
        let packed = self
            .replay
            .call(&mut self.store, (ptr, len))
            .expect("brlock_replay");
        let (out_ptr, out_len) = ((packed >> 32) as u32, packed as u32);
        let mut out = vec![0; out_len as usize];
        self.memory
            .read(&self.store, out_ptr as usize, &mut out)
            .expect("result inside guest memory");
        self.free
            .call(&mut self.store, (out_ptr, out_len))
            .expect("brlock_free");
        out
    }
}
