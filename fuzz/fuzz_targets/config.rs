//! Any text handed to the configuration loader gives a policy or errors, never a panic,
//! and a policy that loads answers decisions without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_policy::{load_str, Connection, Timestamp};

fuzz_target!(|text: &str| {
    if let Ok(policy) = load_str(text, "fuzz.toml") {
        let conn = Connection {
            protocol: 6,
            initiator: "198.18.20.5".parse().unwrap(),
            responder: "203.0.113.7".parse().unwrap(),
            responder_port: 443,
        };
        let d = policy.decide(&conn, Timestamp::from_secs(1_795_316_400));
        let _ = policy.reason_name(d.reason).to_string();
    }
});
