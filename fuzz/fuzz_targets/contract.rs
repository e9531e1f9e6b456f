//! The contract loader on arbitrary text: it may reject, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = contracts::Contract::from_toml_str(text, "fuzz.toml", &contracts::Catalog::builtin());
    }
});
