//! Any bytes as control-socket input: split into bounded lines as the daemon reads them,
//! the first parsed as a hello and the rest as requests. Never a panic; a parsed request
//! encodes and parses back to itself; every refusal has a code and a message.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use sekisho_control::{parse_hello, parse_request, LineError, LineReader, Reply};

fuzz_target!(|data: &[u8]| {
    let mut lines = LineReader::new(BufReader::with_capacity(64, data), 4096);
    let mut line = Vec::new();
    let mut first = true;
    loop {
        match lines.read_line(&mut line) {
            Ok(()) => {}
            Err(LineError::TooLong(_)) | Err(LineError::Closed) | Err(_) => break,
        }
        assert!(line.len() <= 4096 && !line.contains(&b'\n'));
        if first {
            first = false;
            if let Err(e) = parse_hello(&line) {
                assert!(!e.message.is_empty());
            }
            continue;
        }
        match parse_request(&line) {
            Ok(r) => {
                let text = serde_json::to_string(&r).expect("a request encodes");
                let back = parse_request(text.as_bytes()).expect("an encoded request parses");
                assert_eq!(back, r);
            }
            Err((id, e)) => {
                assert!(!e.message.is_empty());
                let reply = Reply::error(id, e).to_line();
                assert!(serde_json::from_str::<Reply>(&reply).is_ok());
            }
        }
    }
});
