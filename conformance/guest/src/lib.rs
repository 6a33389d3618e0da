//! `brlock-guest`: the core exported to `wasm32-unknown-unknown` for the native = wasm checks.
//!
//! No wasm-bindgen and no imports: std on wasm32-unknown-unknown brings its own allocator. The host
//! (wasmtime in the conformance tests and benchmark) calls:
//! 1. `brlock_alloc(len) -> ptr`, and writes a postcard trace there;
//! 2. `brlock_replay(ptr, len) -> u64`, which consumes that buffer and returns `(out_ptr << 32) | out_len`
//!    of a postcard `Replayed` (`Result<Vec<StepOutput>, String>`);
//! 3. `brlock_free(out_ptr, out_len)` once it has read the result.
//!
//! The replay itself is [`brlock_conformance::replay_postcard`], the same function native code calls,
//! so any difference in the bytes comes from the platform and not from two copies of the glue.

/// A buffer of exactly `len` bytes owned by the host until it hands it back.
#[unsafe(no_mangle)]
pub extern "C" fn brlock_alloc(len: u32) -> *mut u8 {
    Box::into_raw(vec![0u8; len as usize].into_boxed_slice()).cast()
}

/// Frees a buffer from [`brlock_alloc`] or a result of [`brlock_replay`].
///
/// # Safety
/// `ptr` and `len` must come from one of those calls, and the buffer must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn brlock_free(ptr: *mut u8, len: u32) {
    // SAFETY: the caller hands back a boxed slice of exactly `len` bytes that we leaked.
    drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(ptr, len as usize)) });
}

/// Replays the postcard trace in the buffer (which it frees) and returns the packed location of the
/// postcard result.
///
/// # Safety
/// `ptr` and `len` must come from [`brlock_alloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn brlock_replay(ptr: *mut u8, len: u32) -> u64 {
    // SAFETY: as for `brlock_free`; we own the buffer from here on.
    let trace = unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(ptr, len as usize)) };
    let out = brlock_conformance::replay_postcard(&trace).into_boxed_slice();
    let out_len = out.len() as u64;
    let out_ptr = Box::into_raw(out).cast::<u8>() as usize as u64;
    (out_ptr << 32) | out_len
}
