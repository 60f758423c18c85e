//! The workload shared by the engine benchmark and the `established_loop` example: the
//! lab policy, and one established flow along the mail path.
#![allow(dead_code)] // each target uses part of it

use sekisho_engine::{Action, Engine, Ingress, Now, Side};
use sekisho_policy::{PortId, Timestamp};
use sekisho_testkit::flags::*;
use sekisho_testkit::TcpConn;

/// 2026-11-22 12:00 JST.
pub const NOW: Now = Now::at(Timestamp(1_795_316_400 * 1_000_000_000));

/// An engine on `configs/lab.toml` with a flow table of `capacity`.
pub fn lab_engine(capacity: usize) -> Engine {
    let text = include_str!("../../../../configs/lab.toml")
        .replace("capacity = 1_000_000", &format!("capacity = {capacity}"));
    Engine::new(sekisho_policy::load_str(&text, "configs/lab.toml").expect("configs/lab.toml loads"))
}

/// The inside interface of the lab port named `name`.
pub fn inside(e: &Engine, name: &str) -> Ingress {
    let port = e.loaded().policy.ports().iter().position(|p| p.name == name).expect("lab port");
    Ingress { port: PortId(port as u16), side: Side::Inside }
}

/// Opens 203.0.113.7:41000 → 198.18.40.10:25 (mail path leg 1) and takes it through its
/// SMTP dialogue until the message data, so that its inspection is done and its state
/// freed; returns where its client's frames arrive and a 64-byte data segment of it.
pub fn established_mail_flow(e: &Engine) -> (Ingress, Vec<u8>) {
    let at = inside(e, "internet-uplink");
    let back = Ingress { side: Side::Outside, ..at };
    let mut c = TcpConn::new(("203.0.113.7", 41000), ("198.18.40.10", 25));
    let mut frames = vec![(at, c.syn()), (back, c.syn_ack()), (at, c.client(ACK, b""))];
    frames.push((back, c.server(ACK | PSH, b"220 relay ESMTP\r\n")));
    frames.push((
        at,
        c.client(ACK | PSH, b"EHLO sender\r\nMAIL FROM:<a@sender>\r\nRCPT TO:<b@lgwan>\r\nDATA\r\n"),
    ));
    frames.push((back, c.server(ACK | PSH, b"250 relay\r\n250 ok\r\n250 ok\r\n354 go ahead\r\n")));
    frames.push((at, c.client(ACK, b"")));
    for (side, frame) in frames {
        assert_eq!(e.process(NOW, side, &frame).action, Action::Forward);
    }
    assert_eq!(e.inspection_stats().active, 0, "the flow's inspection is over");
    // Sent again and again, this segment is a retransmission: always inside the window.
    let data = c.client(ACK | PSH, &[b'x'; 64]);
    assert_eq!(e.process(NOW, at, &data).action, Action::Forward);
    (at, data)
}

/// The port interfaces of the lab port named `name`: (inside, outside).
pub fn sides(e: &Engine, name: &str) -> (Ingress, Ingress) {
    let i = inside(e, name);
    (i, Ingress { side: Side::Outside, ..i })
}
