//! The browser tests (`tests/web_common/`) in a shared worker: no `window`, no DOM.
#![cfg(target_arch = "wasm32")]

mod web_common;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_shared_worker);

#[wasm_bindgen_test::wasm_bindgen_test]
fn runs_in_a_shared_worker() {
    assert_eq!(web_common::global_scope(), "SharedWorkerGlobalScope");
}
