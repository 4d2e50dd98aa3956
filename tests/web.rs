//! The browser tests (`tests/web_common/`) in a page.
#![cfg(target_arch = "wasm32")]

mod web_common;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test::wasm_bindgen_test]
fn runs_in_a_page() {
    assert_eq!(web_common::global_scope(), "Window");
}
