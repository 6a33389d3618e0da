//! `brlock-wasm`: the core compiled to WebAssembly, with a wasm-bindgen API for the browser.
