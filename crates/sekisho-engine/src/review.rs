//! For the control plane: what a policy change would do to the live flows, and cutting
//! flows by hand. Nothing here is on the per-packet path; it walks the flow table.

use sekisho_flow::{FlowKey, FlowSnapshot};
use sekisho_policy::{Mode, Policy, Reason};

use crate::decide::{self, Opening};
use crate::{inspect, next_expiry, Cx, Engine, FrameMeta, Ingress, Loaded, Now, Shard, Side};

/// How a candidate policy would treat the flows alive now ([`Engine::review`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// Live flows examined (not idle past their timeout, not already cut).
    pub flows: u64,
    /// Flows whose packets cross now and would be dropped under the candidate.
    pub cut: u64,
    /// Those flows by the reason that would drop them, indexed like [`Reason::CODES`].
    pub by_reason: [u64; Reason::CODES.len()],
}

impl Review {
    /// The cut flows by reason code, only the codes that occur.
    pub fn cut_by_code(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reason::CODES.iter().zip(self.by_reason).filter(|(_, n)| *n > 0).map(|(c, n)| (*c, n))
    }
}

/// Whether a flow's packets cross under `reason` in `mode` (monitor forwards denials).
fn crosses(reason: Reason, mode: Mode) -> bool {
    reason.allowed() || mode == Mode::Monitor
}

impl Engine {
    /// Re-decides every live flow — ingress contract and policy, with the same `decide`
    /// stage the data plane uses — under the policy in force and under `candidate`, at
    /// `now`, and counts the flows that cross now and would not under the candidate
    /// (a deny, or a mode change to enforce). Changes nothing: the data plane re-decides
    /// each flow at its next packet once the candidate is swapped in
    /// ([`Engine::reload`]). Flows whose port the candidate lacks are not counted (such
    /// a reload is refused anyway).
    pub fn review(&self, candidate: &Policy, now: Now) -> Review {
        let current = self.loaded();
        let proposed = Loaded {
            policy: std::sync::Arc::new(candidate.clone()),
            generation: 0,
            next_expiry: next_expiry(candidate, None),
            since: 0,
            policy_id: 0,
            leg_base: crate::leg_base(candidate),
            previous: None,
        };
        let mut review = Review { flows: 0, cut: 0, by_reason: [0; Reason::CODES.len()] };
        let timeouts = *self.flows.timeouts();
        self.flows.for_each(|key, entry| {
            if inspect::word::cut(entry.inspect_state()).is_some() || entry.is_expired(now.mono, &timeouts) {
                return;
            }
            review.flows += 1;
            let origin = entry.origin();
            let ingress = Ingress { port: sekisho_policy::PortId(origin / 2), side: Side::of_origin(origin) };
            let opening = Opening {
                initiator: key.socket(entry.initiator()),
                responder: key.socket(entry.initiator().other()),
                protocol: key.protocol(),
                tunnel: decide::class_tunnel(entry.class()),
                side: ingress.side,
            };
            let finding = std::cell::Cell::new(None);
            // Under the candidate, the flow was checked under the policy in force.
            let judge = |loaded: &Loaded, before: decide::Before<'_>| {
                let port = loaded.policy.ports().get(usize::from(ingress.port.0))?;
                let now = Now { wall: sekisho_policy::Timestamp(now.wall.0.max(loaded.since)), ..now };
                let monitor = loaded.policy.mode() == Mode::Monitor;
                // `redecide` counts nothing and inspects nothing: the shard and the
                // finding stay untouched.
                let cx = Cx {
                    engine: self,
                    loaded,
                    port,
                    ingress,
                    now,
                    monitor,
                    meta: FrameMeta::default(),
                    shard: Shard { counters: &self.counters, exclusive: false, finding: &finding },
                };
                Some(decide::redecide(&cx, &opening, entry.inspect_state(), before))
            };
            let Some(before) = judge(&current, decide::Before::Same) else { return };
            let Some(after) = judge(&proposed, decide::Before::Known(&current.policy, before)) else {
                return;
            };
            if crosses(before, current.policy.mode()) && !crosses(after, candidate.mode()) {
                review.cut += 1;
                review.by_reason[after.index()] += 1;
            }
        });
        review
    }

    /// Removes every flow `select` picks (given its key, a snapshot and its cached
    /// reason) and returns how many went. A removed TCP connection is cut: its next
    /// segment has no flow and is refused (`deny:no-flow`); UDP and ICMP traffic may
    /// open a new flow, decided afresh by the policy.
    pub fn kill_flows(&self, mut select: impl FnMut(&FlowKey, &FlowSnapshot, Reason) -> bool) -> usize {
        let mut doomed = Vec::new();
        self.for_each_flow(|key, snapshot, reason| {
            if select(key, snapshot, reason) {
                doomed.push(*key);
            }
        });
        let table = self.flows.pin();
        doomed.iter().filter(|key| table.remove(key)).count()
    }
}
