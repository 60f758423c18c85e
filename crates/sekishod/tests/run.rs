//! `sekishod run` refuses to start, with a message naming the interface, when a port's
//! interface is not there, and leaves no control socket behind. (Forwarding itself is tested end to end in tests/, in
//! network namespaces.)

use std::process::Command;

#[test]
fn a_missing_interface_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("sekisho-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("missing.toml");
    std::fs::write(
        &config,
        "[[zone]]\nname = \"lgwan\"\nkind = \"lgwan\"\nprefixes = [\"198.18.20.0/24\"]\n\n\
         [[port]]\nname = \"lgwan-uplink\"\nzone = \"lgwan\"\ninside = \"skx-nope-in\"\noutside = \"skx-nope-out\"\n",
    )
    .unwrap();
    let socket = dir.join("ctl").join("control.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .args(["run", "-c"])
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("skx-nope-in") && stderr.contains("lgwan-uplink"), "{stderr}");
    assert!(!socket.exists(), "no control socket left behind: the daemon never became ready");
    let _ = std::fs::remove_dir_all(&dir);
}
