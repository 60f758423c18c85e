//! Feeds arbitrary frames to the engine on the lab policy, each at a port and side and a
//! time the input chooses: no panic, and a frame is forwarded only with an allow reason.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sekisho_engine::{Action, Engine, Ingress, Now, Side};
use sekisho_policy::{PortId, Timestamp};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let text = include_str!("../../configs/lab.toml").replace("capacity = 1_000_000", "capacity = 4096");
        Engine::new(sekisho_policy::load_str(&text, "lab.toml").expect("the lab policy loads"))
    })
}

fuzz_target!(|data: &[u8]| {
    // A sequence of frames: [port/side byte, time byte, length byte, frame bytes...]...
    let e = engine();
    let mut rest = data;
    let mut t: u64 = 1_795_316_400_000_000_000;
    while let [sel, dt, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        t += u64::from(*dt) * 1_000_000_000;
        let side = if sel & 1 == 0 { Side::Inside } else { Side::Outside };
        let ingress = Ingress { port: PortId(u16::from(sel >> 1) % 5), side };
        let v = e.process(Now::at(Timestamp(t)), ingress, frame);
        assert!(v.action == Action::Drop || v.reason.allowed(), "forwarded with {:?}", v.reason);
    }
});
