//! docs/control-protocol.md agrees with the code: every command and error code has its
//! place, and every example line parses as what it claims to be — requests with the real
//! parser, replies as the envelope and their `data` as the command's own type.

use sekisho_control::*;
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/control-protocol.md");

fn typed(cmd: &str, data: &Value) -> Result<(), String> {
    let check = |r: Result<(), serde_json::Error>| r.map_err(|e| format!("{cmd}: {e}"));
    let v = data.clone();
    match cmd {
        "status" => check(serde_json::from_value::<Status>(v).map(drop)),
        "stats" => check(serde_json::from_value::<Stats>(v).map(drop)),
        "flows" => check(serde_json::from_value::<Vec<Flow>>(v).map(drop)),
        "flow-kill" => check(serde_json::from_value::<Killed>(v).map(drop)),
        "explain" => check(serde_json::from_value::<Explanation>(v).map(drop)),
        "check" => check(serde_json::from_value::<CheckReport>(v).map(drop)),
        "reload" => check(serde_json::from_value::<ReloadReport>(v).map(drop)),
        "confirm" => check(serde_json::from_value::<Confirmed>(v).map(drop)),
        "rollback" => check(serde_json::from_value::<RolledBack>(v).map(drop)),
        "mode" => check(serde_json::from_value::<ModeReport>(v).map(drop)),
        "log-level" => check(serde_json::from_value::<LogLevel>(v).map(drop)),
        "events" => check(
            serde_json::from_value::<Vec<Event>>(v.clone())
                .map(drop)
                .or_else(|_| serde_json::from_value::<Event>(v).map(drop))
                .or_else(|e| if data["following"] == true { Ok(()) } else { Err(e) }),
        ),
        "history" => check(serde_json::from_value::<Vec<Change>>(v).map(drop)),
        "hello" => check(serde_json::from_value::<Welcome>(v).map(drop)),
        other => Err(format!("no type for {other}")),
    }
}

#[test]
fn every_example_parses_as_what_it_claims() {
    let mut last: Option<String> = None;
    let mut requests = 0;
    let mut seen = std::collections::HashSet::new();
    for (n, line) in DOC.lines().enumerate() {
        let at = n + 1;
        if let Some(req) = line.strip_prefix("→ ") {
            requests += 1;
            if req.contains("\"hello\"") {
                parse_hello(req.as_bytes())
                    .unwrap_or_else(|e| panic!("line {at}: the hello does not parse: {e}"));
                last = Some("hello".into());
                continue;
            }
            match parse_request(req.as_bytes()) {
                Ok(r) => {
                    seen.insert(r.cmd.name());
                    last = Some(r.cmd.name().into());
                }
                Err((_, e)) if e.message.contains("stauts") => last = Some("bad".into()),
                Err((_, e)) => panic!("line {at}: the request does not parse: {e}"),
            }
        } else if let Some(rep) = line.strip_prefix("← ") {
            let reply: Reply =
                serde_json::from_str(rep).unwrap_or_else(|e| panic!("line {at}: not an envelope: {e}"));
            let cmd = last.as_deref().unwrap_or_else(|| panic!("line {at}: a reply without a request"));
            match (&reply.data, &reply.error) {
                (Some(data), None) if reply.ok => {
                    typed(cmd, data).unwrap_or_else(|e| panic!("line {at}: {e}"))
                }
                (None, Some(_)) if !reply.ok => {}
                _ => panic!("line {at}: an envelope with both or neither of data and error"),
            }
        }
    }
    assert!(requests >= Command::NAMES.len(), "only {requests} example requests");
    for name in Command::NAMES {
        assert!(seen.contains(name), "no example request for `{name}`");
    }
}

#[test]
fn every_command_and_error_code_is_documented() {
    for name in Command::NAMES {
        assert!(DOC.contains(&format!("### `{name}`")), "no section for `{name}`");
    }
    for code in ErrorCode::ALL {
        assert!(
            DOC.contains(&format!("| `{}` |", code.as_str())),
            "error code {} is not in the table",
            code.as_str()
        );
    }
    // The limits, as written for people.
    assert!(MAX_LINE == 1 << 20 && DOC.contains("1 MiB"));
    assert!(MAX_POLICY_TEXT == 512 * 1024 && DOC.contains("512 KiB"));
    assert!(MAX_FLOWS == 10_000 && DOC.contains("10,000"));
    assert!(MAX_REPLY == 16 << 20 && DOC.contains("16 MiB"));
}
