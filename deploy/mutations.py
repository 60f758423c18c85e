#!/usr/bin/env python3
"""Breaks the engine on purpose, one separation or inspection fix at a time, and shows which
tests catch each break (docs/security.md, "How each way around it is closed" and "What an
approved path carries").

    python3 deploy/mutations.py            # every mutation (about 40 minutes on 2 cores)
    python3 deploy/mutations.py 1a 7       # those whose names start with 1a or 7

Run it on a clean tree: each mutation edits one file and `git checkout` restores it.
Prints one line per mutation: the tests that failed, or NOT CAUGHT.
"""
import os
import re
import subprocess
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# (name, file, the code as it is, the code broken)
M = [
 ("1a icmp error from any source", "crates/sekisho-engine/src/resolve.rs", "if ip.src != q.dst && !from_router {", "if false && ip.src != q.dst && !from_router {"),
 ("1b icmp error of any size", "crates/sekisho-engine/src/resolve.rs", "if ip.total_len > max {", "if false && ip.total_len > max {"),
 ("1c related skips re-decision", "crates/sekisho-engine/src/resolve.rs", "    let reason = decide::current(cx, entry, &key, entry.inspect_state());\n    if reason.allowed() {\n        Reason::Related", "    let reason = Reason::IntraZone;\n    if reason.allowed() {\n        Reason::Related"),
 ("1d icmp error from either side", "crates/sekisho-engine/src/resolve.rs", "    if cx.ingress.side != peer_side {\n        return Reason::SpoofedSource;", "    if false && cx.ingress.side != peer_side {\n        return Reason::SpoofedSource;"),
 ("2a mapped ipv6 accepted", "crates/sekisho-engine/src/ingress.rs", "let in_v6_0 = matches!(bits >> 32, 0 | 0xffff | 0xffff_0000)", "let in_v6_0 = false && matches!(bits >> 32, 0 | 0xffff | 0xffff_0000)"),
 ("3 link traffic judged by its source", "crates/sekisho-engine/src/link.rs", "on_segment_source(policy, port, side, ip.src) && on_segment_destination(policy, port, ip.dst)", "on_segment_source(policy, port, side, ip.src)"),
 ("4 outside takes any destination", "crates/sekisho-engine/src/ingress.rs", "Side::Outside if policy.zone_of(responder) != Some(port.zone) => Err(Reason::Misdirected),", "Side::Outside if false => Err(Reason::Misdirected),"),
 ("4b own-zone source from outside", "crates/sekisho-engine/src/ingress.rs", "Side::Outside if policy.zone_of(initiator) == Some(port.zone) && !port.is_router(initiator) => {", "Side::Outside if false => {"),
 ("5 any vlan", "crates/sekisho-engine/src/ingress.rs", "if !vlan.outer_is_service_tag && port.admits_vlan(vlan.outer, vlan.inner) {", "if true || port.admits_vlan(vlan.outer, vlan.inner) {"),
 ("6a no side binding", "crates/sekisho-engine/src/track.rs", "    if cx.ingress.side != expected {\n        return Reason::SpoofedSource;", "    if false && cx.ingress.side != expected {\n        return Reason::SpoofedSource;"),
 ("6b established evictable", "crates/sekisho-flow/src/entry.rs", "!matches!(self, FlowState::Replied | FlowState::Established)", "true"),
 ("6c no sequence check", "crates/sekisho-flow/src/entry.rs", "Step::OutOfWindow => return Observed::OutOfWindow,", "Step::OutOfWindow => current,"),
 ("6d one share for all", "crates/sekisho-flow/src/map.rs", "guaranteed: capacity / (2 * n),", "guaranteed: 0,"),
 ("7a fragments keep their first verdict", "crates/sekisho-engine/src/resolve.rs", "    let reason = decide::current(cx, entry, &parent, entry.inspect_state());\n    if reason.allowed() {\n        if let", "    let reason = crate::reason::decode(entry.decision().verdict);\n    if reason.allowed() {\n        if let"),
 ("7b fragments live forever", "crates/sekisho-flow/src/fragments.rs", "now.saturating_sub(self.created) > *lifetime", "false && now.saturating_sub(self.created) > *lifetime"),
 ("8 echo keyed without direction", "crates/sekisho-wire/src/lib.rs", "        if self.is_echo_request() {\n            (self.ident, 0)\n        } else if self.is_echo_reply() {\n            (0, self.ident)", "        if self.is_echo_request() {\n            (self.ident, self.ident)\n        } else if self.is_echo_reply() {\n            (self.ident, self.ident)"),
 ("10a timeouts on the wall clock", "crates/sekisho-engine/src/lib.rs", "        let cx = Cx { engine: self, loaded, port, ingress, now, monitor, meta, shard };", "        let now = Now { mono: now.wall.0, ..now };\n        let cx = Cx { engine: self, loaded, port, ingress, now, monitor, meta, shard };"),
 ("10b decisions use a lagging clock", "crates/sekisho-engine/src/lib.rs", "let now = Now { wall: Timestamp(now.wall.0.max(loaded.since)), ..now };", "let now = Now { wall: now.wall, ..now };"),
 ("2b keys without the family", "crates/sekisho-flow/src/key.rs", "let v6 = src.addr.is_ipv6();", "let v6 = false;"),
 ("12 syn+ack retransmission loosely matched", "crates/sekisho-flow/src/tcp.rs", "let retransmit = seg.seq == s.isn.load(Relaxed)\n                    && seg.ack == o.isn.load(Relaxed).wrapping_add(1)\n                    && seg.len == 0", "let retransmit = before(seg.seq, s.end.load(Relaxed))\n                    && !after(seg.ack, o.end.load(Relaxed))"),
 ("13 icmp quote without the sequence number", "crates/sekisho-engine/src/resolve.rs", "let Some(seq) = q.tcp_seq else { return Reason::Malformed };", "let Some(seq) = q.tcp_seq.or(Some(t.sent_window(quoted_from_initiator).0)) else { return Reason::Malformed };"),
 ("14 link traffic on outside from any host of the zone", "crates/sekisho-engine/src/link.rs", "(Side::Outside, _) => port.is_router(addr),", "(Side::Outside, _) => policy.zone_of(addr) == Some(port.zone),"),
 ("15 one share per origin", "crates/sekisho-flow/src/entry.rs", "usize::from(self.origin) * SHARES + usize::from(self.share)", "usize::from(self.origin) * SHARES"),
 ("16 quiet handshakes never evicted", "crates/sekisho-flow/src/entry.rs", "if idle >= QUIET_IDLE {", "if false {"),
 ("17 echo keys without the requester", "crates/sekisho-engine/src/resolve.rs", "Endpoint::Lo => 1,\n        Endpoint::Hi => 2,", "Endpoint::Lo => 0,\n        Endpoint::Hi => 0,"),
 ("18 routing header in use accepted", "crates/sekisho-wire/src/lib.rs", "if *left > 0 =>", "if false && *left > 0 =>"),
 ("19 nat64 6to4 teredo accepted", "crates/sekisho-engine/src/ingress.rs", "in_v6_0 || nat64 || tunnelled", "in_v6_0"),
 ("20a vxlan by port and flag only", "crates/sekisho-wire/src/lib.rs", "if port(PORT_VXLAN) || port(PORT_VXLAN_LINUX) {", "if port(PORT_VXLAN) && udp.payload.first().is_some_and(|f| f & 0x08 != 0) {"),
 ("20b udp first fragment of any size", "crates/sekisho-wire/src/lib.rs", "if first_fragment && payload.len() < 8 {", "if false && first_fragment && payload.len() < 8 {"),
 ("21 service tag taken for 802.1q", "crates/sekisho-engine/src/ingress.rs", "if !vlan.outer_is_service_tag && port.admits_vlan(", "if port.admits_vlan("),
 ("22 any ethertype listable", "crates/sekisho-policy/src/load.rs", "_ if LINK_ETHERTYPES.iter().any(|(e, _)| *e == t) => None,", "_ if !matches!(t, 0..=0x05ff | 0x0800 | 0x86dd | 0x0806 | 0x8100 | 0x88a8 | 0x9100) => None,"),
 ("23 ethernet trailers pass", "crates/sekisho-wire/src/lib.rs", "if frame.len() > padded.max(l2_len + ip.total_len) {", "if false && frame.len() > padded.max(l2_len + ip.total_len) {"),
 ("24 fragments keyed by the final protocol", "crates/sekisho-engine/src/resolve.rs", "let key = FragmentKey::new(cx.ingress.port.0, vlan, frag.proto, ip.src, ip.dst, frag.id);\n    let record", "let key = FragmentKey::new(cx.ingress.port.0, vlan, ip.protocol, ip.src, ip.dst, frag.id);\n    let record"),
 ("25a inspect a segment with a wrong checksum", "crates/sekisho-engine/src/inspect/mod.rs", "if !data.is_empty() && !cx.meta.checksum_partial && !p.checksum_ok() {", "if false && !cx.meta.checksum_partial && !p.checksum_ok() {"),
 ("25b pass data ahead of the next byte", "crates/sekisho-engine/src/inspect/stream.rs", "return if self.done { Accept::Nothing } else { Accept::Ahead };", "return Accept::Nothing;"),
 ("25c inspect a RST's data", "crates/sekisho-engine/src/inspect/mod.rs", "let data = if rst { &[][..] } else { p.payload };", "let data = p.payload;"),
 ("25d repetitions not compared", "crates/sekisho-engine/src/inspect/stream.rs", "if held != Some(&payload[skip..overlap]) {", "if false && held != Some(&payload[skip..overlap]) {"),
 ("25e state freed before the receiver has the bytes", "crates/sekisho-engine/src/inspect/mod.rs", "all(|(i, dir)| dir.done && dir.delivered(tracker.acked(i == 0)));", "all(|(_, dir)| dir.done);"),
 ("25f fragments of inspected segments pass", "crates/sekisho-engine/src/inspect/mod.rs", "    if p.fragmented() || (!tcp && cx.meta.gso != crate::Gso::None) {", "    if false {"),
 ("26 the server's bytes unchecked", "crates/sekisho-engine/src/inspect/validate.rs", "    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {\n        let d = side(from_initiator);", "    pub(crate) fn feed(&mut self, env: &Env<'_>, from_initiator: bool, data: &[u8]) -> Step {\n        let d = side(from_initiator);\n        if !from_initiator {\n            return Step::done(data.len());\n        }"),
 ("27 the text leg takes any part", "crates/sekisho-engine/src/inspect/mime.rs", "if !(ty.eq_ignore_ascii_case(b\"text\") && sub.eq_ignore_ascii_case(b\"plain\")) {", "if false {"),
 ("28 server names unchecked", "crates/sekisho-engine/src/inspect/tls.rs", "env.service.filter(|s| !s.sni_allow.is_empty()) else", "env.service.filter(|_| false) else"),
 ("37 the second ClientHello unchecked", "crates/sekisho-engine/src/inspect/tls.rs", "            Some(true) => {\n                let Some(h) = data.get(..5)", "            Some(true) => Step::done(0),\n            Some(_) => {\n                let Some(h) = data.get(..5)"),
 ("39 a reload's new app leaves open flows unchecked", "crates/sekisho-engine/src/decide.rs", "let checked_alike = inspect::word::covers(word, d.app)", "let checked_alike = true"),
 ("40 fragments of inspected datagrams pass", "crates/sekisho-engine/src/inspect/mod.rs", "    if p.fragmented() || (!tcp && cx.meta.gso != crate::Gso::None) {", "    if (p.fragmented() && tcp) || (!tcp && cx.meta.gso != crate::Gso::None) {"),
 ("41 freed checks forget the checked bytes", "crates/sekisho-engine/src/inspect/mod.rs", "let checked = acked.min(cx.engine.inspections.depth as i64);", "let checked = acked.min(0);"),
 ("43 a segment starting before the stream repeats checked bytes", "crates/sekisho-engine/src/inspect/mod.rs", "start < checked && end > 0", "start < checked && start >= 0"),
 ("45 dropped inspected bytes replaced while the check lives", "crates/sekisho-engine/src/inspect/stream.rs", "if skip > 0 && ((-from_base) as u64) < self.dropped + skip as u64 {", "if false {"),
 ("46 a UDP super-datagram checked as one message", "crates/sekisho-engine/src/inspect/mod.rs", "    if p.fragmented() || (!tcp && cx.meta.gso != crate::Gso::None) {", "    if p.fragmented() {"),
 ("47 upgrade to h2c", "crates/sekisho-engine/src/inspect/http.rs", "if from_initiator && !env.allow_connect() && upgrades_to_h2c(line) {", "if false {"),
 ("48 a reload narrowing an app's settings keeps flows", "crates/sekisho-engine/src/decide.rs", "old.app == now.app && names_kept && (old.allow_connect <= now.allow_connect)", "old.app == now.app"),
 ("42 offload placement unchecked", "crates/sekisho-engine/src/lib.rs", "usize::from(start) == at && offset == checksum_at", "true"),
 ("29 a full inspection table lets data through", "crates/sekisho-engine/src/inspect/mod.rs", "bump(&c.table_full);\n                    return Reason::FlowTableFull;", "bump(&c.table_full);\n                    return reason;"),
]
only = sys.argv[1:]
for name, path, old, new in M:
    if only and not any(name.startswith(o) for o in only):
        continue
    src = open(path).read()
    if old not in src:
        print(f"{name}: PATTERN NOT FOUND", flush=True); continue
    open(path, "w").write(src.replace(old, new, 1))
    try:
        caught = []
        for t in ["separation", "attacks", "review_attacks", "engine", "inspection", "inspect_random", "final_review"]:
            r = subprocess.run(["cargo", "test", "-p", "sekisho-engine", "--test", t], capture_output=True, text=True, timeout=1200)
            out = r.stdout + r.stderr
            if "could not compile" in out:
                caught.append(f"{t}: BUILD ERROR")
                break
            caught += [f"{t}::{x}" for x in re.findall(r"^test (\S+) \.\.\. FAILED", out, re.M)]
            if t == "separation":
                m = re.search(r"Test failed: (.*)", out)
                if m and caught: caught[-1] += f" [{m.group(1)[:150]}]"
        print(f"{name}: " + ("; ".join(caught) if caught else "NOT CAUGHT"), flush=True)
    finally:
        subprocess.run(["git", "checkout", "--", path])
