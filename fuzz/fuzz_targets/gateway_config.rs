//! The gateway's config file: any text is a config or an error naming
//! what is wrong, never a panic (names are resolved only after this).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<gateway::config::Config>(text) {
        let _ = config.validate();
    }
});
