#!/usr/bin/env bash
# sekisho baseline benchmark (issue 3): one run, one lab topology, the same traffic through
#   (a) bridge+nft  — a Linux bridge per port pair in the gateway namespace, with an
#                     nftables ruleset expressing configs/lab.toml's policy: conntrack
#                     (`ct state established,related accept`, new TCP only with a bare SYN),
#                     then the allowed new connections, drop the rest; the per-port
#                     anti-spoofing and the non-IP drop in a bridge-family table. Bridged
#                     IP traffic reaches the inet-family conntrack through br_netfilter
#                     (this kernel has no nf_conntrack_bridge);
#   (b) sekishod    — `sekishod run` (release build) on a copy of configs/lab.toml with
#                     one extra path "bench" (lgwan -> 198.18.40.20: TCP and UDP 5201,
#                     ICMP; app any) so that iperf3 and ping are allowed traffic.
# The flow measured: lgwan terminal 198.18.20.5 -> file sanitiser host 198.18.40.20, which
# crosses two port pairs (lg, sz) and the core router, as real cross-zone traffic does.
#
# Measured, per backend and repetition (backends interleaved: bridge, sekishod, bridge, ...):
#   tcp1_gbps   iperf3, 1 TCP stream, receiver throughput
#   tcp4_gbps   iperf3, 4 TCP streams (-P 4), receiver throughput
#   udp64_kpps  iperf3 -u -l 64 -b 0 (unlimited): datagrams delivered per second (thousands)
#   udp64_loss  lost datagrams, percent
#   ping_p50_us / ping_p99_us   ping -i 0.002 -c 2000 round-trip time percentiles (µs)
#   ping_loss   percent
# Offloads as in the lab (DESIGN.md section 4): tx checksum offload off on host- and
# router-side veths (so no TSO: MTU-sized frames), GRO/LRO off on the gateway ports — the
# same for both backends.
#
# Run (as root, from anywhere; needs iproute2 ethtool nftables iperf3 iputils-ping python3):
#   deploy/bench-lab.sh                      # 10 s per test, 3 repetitions
#   deploy/bench-lab.sh --duration 5 --repeat 1
#   deploy/bench-lab.sh --profile            # + where sekishod's time goes: strace -c and
#                                            #   perf record/report during a 1-stream TCP run
#   deploy/bench-lab.sh --sekishod PATH      # an already built binary (no cargo build)
# Output: a table for people, and machine-parsable lines:
#   RESULT backend=<b> run=<n> metric=<m> value=<v>
#   SUMMARY backend=<b> metric=<m> median=<v> min=<v> max=<v>
#   RATIO metric=<m> sekishod/bridge+nft=<r>
# Raw iperf3 JSON and ping output are kept in the results directory it prints.
# Cleans up after itself (lab namespaces with prefix skb-, processes it started) on exit.
set -euo pipefail

DURATION=10
REPEAT=3
PREFIX=skb-
PROFILE=0
SEKISHOD=""
UDP_RATE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    --sekishod) SEKISHOD="$2"; shift 2 ;;
    --udp-rate) UDP_RATE="$2"; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ "$(id -u)" != 0 ]; then echo "bench-lab.sh needs root (network namespaces)" >&2; exit 2; fi
for tool in ip ethtool nft iperf3 ping python3; do
  command -v "$tool" >/dev/null || { echo "bench-lab.sh needs $tool" >&2; exit 2; }
done

if [ -z "$SEKISHOD" ]; then
  echo "== cargo build --release -p sekishod -p sekishoctl -p sekisho-lab"
  cargo build --release -p sekishod -p sekishoctl -p sekisho-lab
  SEKISHOD="$ROOT/target/release/sekishod"
fi
[ -x "$SEKISHOD" ] || { echo "no sekishod binary at $SEKISHOD" >&2; exit 2; }
# The lab and the control client are built beside the daemon.
BIN=$(dirname "$SEKISHOD")
LAB="$BIN/sekisho-lab"
CTL="$BIN/sekishoctl"
for p in "$LAB" "$CTL"; do [ -x "$p" ] || { echo "no $p: build it beside $SEKISHOD" >&2; exit 2; }; done

GW="${PREFIX}gw"; LG="${PREFIX}lg"; SZ="${PREFIX}sz"; IN="${PREFIX}in"
SRC=198.18.20.5
DST=198.18.40.20
OUT=$(mktemp -d /tmp/sekisho-bench-XXXXXX)
CONFIG="$OUT/bench.toml"
DAEMON_PID=""
SERVER_PID=""

cleanup() {
  set +e
  [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  "$LAB" down --prefix "$PREFIX" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== lab up (prefix $PREFIX, no services); results in $OUT"
"$LAB" up --prefix "$PREFIX" --no-services >"$OUT/lab-up.txt"

cp configs/lab.toml "$CONFIG"
cat >>"$CONFIG" <<'EOF'

# --- added by deploy/bench-lab.sh: the benchmark's traffic is allowed traffic ---
[[service]]
name = "bench-iperf-tcp"
proto = "tcp"
ports = [5201]
app = "any"

[[service]]
name = "bench-iperf-udp"
proto = "udp"
ports = [5201]
app = "any"

[[service]]
name = "bench-ping"
proto = "icmp"
app = "any"

[[path]]
name = "bench"
method = "file-sanitize"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.20"
  service = "bench-iperf-tcp"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.20"
  service = "bench-iperf-udp"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.20"
  service = "bench-ping"
EOF
"$SEKISHOD" check -c "$CONFIG" >/dev/null

# The nftables ruleset: configs/lab.toml + the bench path, as conntrack rules.
cat >"$OUT/bench.nft" <<'EOF'
table bridge sekisho_link {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ether type arp accept
    # anti-spoofing: a source arriving on a port's inside must belong to its zone
    iifname "mn-in" ether type ip ip saddr != 198.18.10.0/24 drop
    iifname "lg-in" ether type ip ip saddr != 198.18.20.0/24 drop
    iifname "sz-in" ether type ip ip saddr != 198.18.40.0/24 drop
    iifname "in-in" ether type ip ip saddr { 198.18.10.0/24, 198.18.20.0/24, 198.18.40.0/24, 198.18.50.0/24 } drop
    iifname "mn-in" ether type ip6 ip6 saddr != { 2001:db8:10::/48, fe80::/10, :: } drop
    iifname "lg-in" ether type ip6 ip6 saddr != { 2001:db8:20::/48, fe80::/10, :: } drop
    iifname "sz-in" ether type ip6 ip6 saddr != { 2001:db8:40::/48, fe80::/10, :: } drop
    iifname "in-in" ether type ip6 ip6 saddr { 2001:db8:10::/48, 2001:db8:20::/48, 2001:db8:40::/48 } drop
    # IP goes on to the inet table (br_netfilter); other ethertypes are dropped
    ether type { ip, ip6 } accept
  }
}
table inet sekisho {
  set nonint4 { type ipv4_addr; flags interval; elements = { 198.18.10.0/24, 198.18.20.0/24, 198.18.40.0/24, 198.18.50.0/24 } }
  set nonint6 { type ipv6_addr; flags interval; elements = { 2001:db8:10::/48, 2001:db8:20::/48, 2001:db8:40::/48 } }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    # a TCP flow starts with a bare SYN (no mid-stream pick-up)
    ct state new tcp flags & (fin | syn | rst | ack) != syn drop
    # link traffic: neighbour discovery
    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } ip6 hoplimit 255 accept
    # same zone on both ends
    ip saddr 198.18.10.0/24 ip daddr 198.18.10.0/24 accept
    ip saddr 198.18.20.0/24 ip daddr 198.18.20.0/24 accept
    ip saddr 198.18.40.0/24 ip daddr 198.18.40.0/24 accept
    ip saddr 198.18.50.0/24 ip daddr 198.18.50.0/24 accept
    ip saddr != @nonint4 ip daddr != @nonint4 accept
    ip6 saddr 2001:db8:10::/48 ip6 daddr 2001:db8:10::/48 accept
    ip6 saddr 2001:db8:20::/48 ip6 daddr 2001:db8:20::/48 accept
    ip6 saddr 2001:db8:40::/48 ip6 daddr 2001:db8:40::/48 accept
    ip6 saddr != @nonint6 ip6 daddr != @nonint6 accept
    # path mail-textify
    ip saddr != @nonint4 ip daddr 198.18.40.10 tcp dport 25 accept
    ip saddr 198.18.40.10 ip daddr 198.18.20.25 tcp dport 25 accept
    # path file-sanitize
    ip saddr 198.18.20.0/24 ip daddr 198.18.40.20 tcp dport 443 accept
    ip saddr != @nonint4 ip daddr 198.18.40.20 tcp dport 443 accept
    # path screen-transfer
    ip saddr 198.18.20.0/24 ip daddr 203.0.113.50 tcp dport 3389 accept
    # exception juki-batch
    ip saddr 198.18.10.5 ip daddr 198.18.20.30 tcp dport 22 accept
    # rule mgmt-ssh
    ip saddr 198.18.50.0/24 ip daddr 198.18.40.0/24 tcp dport 22 accept
    # path bench (this script)
    ip saddr 198.18.20.0/24 ip daddr 198.18.40.20 tcp dport 5201 accept
    ip saddr 198.18.20.0/24 ip daddr 198.18.40.20 udp dport 5201 accept
    ip saddr 198.18.20.0/24 ip daddr 198.18.40.20 icmp type echo-request accept
  }
}
EOF

nsx() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

backend_up() {
  case "$1" in
    bridge+nft)
      for s in mn lg in sz; do
        ip -n "$GW" link add "br-$s" type bridge stp_state 0
        ip -n "$GW" link set "$s-in" master "br-$s"
        ip -n "$GW" link set "$s-out" master "br-$s"
        ip -n "$GW" link set "br-$s" up
      done
      nsx "$GW" sysctl -q -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
      nsx "$GW" nft -f "$OUT/bench.nft"
      ;;
    sekishod)
      NO_COLOR=1 ip netns exec "$GW" "$SEKISHOD" run -c "$CONFIG" --control-socket "$OUT/ctl/control.sock" \
        --state-dir "$OUT/state" >>"$OUT/sekishod.out" 2>>"$OUT/sekishod.log" &
      DAEMON_PID=$!
      READY=""
      for _ in $(seq 1 300); do
        "$CTL" --socket "$OUT/ctl/control.sock" status >/dev/null 2>&1 && { READY=1; break; }
        kill -0 "$DAEMON_PID" 2>/dev/null || { echo "sekishod run exited:" >&2; tail -5 "$OUT/sekishod.log" >&2; exit 1; }
        sleep 0.05
      done
      [ -n "$READY" ] || { echo "sekishod run not ready" >&2; exit 1; }
      ;;
  esac
  # Warm up ARP/neighbour caches through the new path.
  nsx "$LG" ping -n -q -c 3 -i 0.2 -W 1 -I "$SRC" "$DST" >/dev/null || true
}

backend_down() {
  case "$1" in
    bridge+nft)
      nsx "$GW" nft delete table inet sekisho
      nsx "$GW" nft delete table bridge sekisho_link
      nsx "$GW" sysctl -q -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
      for s in mn lg in sz; do ip -n "$GW" link del "br-$s"; done
      ;;
    sekishod)
      kill -TERM "$DAEMON_PID"
      wait "$DAEMON_PID" || { echo "sekishod run did not exit 0" >&2; exit 1; }
      DAEMON_PID=""
      ;;
  esac
}

# The same policy both ways: allowed traffic passes, forbidden does not.
policy_check() {
  local b="$1" ok=1
  nsx "$LG" ping -n -q -c 1 -W 1 -I "$SRC" "$DST" >/dev/null || { echo "  $b: allowed ping lgwan -> $DST FAILED" >&2; ok=0; }
  if nsx "$LG" ping -n -q -c 1 -W 1 -I "$SRC" 203.0.113.7 >/dev/null 2>&1; then
    echo "  $b: forbidden ping lgwan -> internet 203.0.113.7 PASSED" >&2; ok=0
  fi
  [ "$ok" = 1 ] && echo "  $b: policy check ok (allowed passes, lgwan -> internet blocked)"
  [ "$ok" = 1 ]
}

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$3"; }

result() {  # backend run metric value
  echo "RESULT backend=$1 run=$2 metric=$3 value=$4" | tee -a "$OUT/results.txt"
}

measure() {  # backend run
  local b="$1" r="$2" f
  f="$OUT/$b-$r"
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t "$DURATION" -J >"$f-tcp1.json"
  result "$b" "$r" tcp1_gbps "$(json x "'%.3f' % (d['end']['sum_received']['bits_per_second']/1e9)" "$f-tcp1.json")"
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t "$DURATION" -P 4 -J >"$f-tcp4.json"
  result "$b" "$r" tcp4_gbps "$(json x "'%.3f' % (d['end']['sum_received']['bits_per_second']/1e9)" "$f-tcp4.json")"
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t "$DURATION" -u -l 64 -b "$UDP_RATE" -J >"$f-udp64.json"
  local udp
  udp=$(python3 - "$f-udp64.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["end"].get("sum_received") or d["end"]["sum"]
sent = d["end"].get("sum_sent", d["end"]["sum"])
packets = sent.get("packets", s.get("packets", 0))
lost = s.get("lost_packets", 0)
seconds = s.get("seconds") or sent.get("seconds") or 1
delivered = max(packets - lost, 0)
loss = 100.0 * lost / packets if packets else 100.0
print("%.1f %.2f" % (delivered / seconds / 1000.0, loss))
EOF
)
  result "$b" "$r" udp64_kpps "${udp% *}"
  result "$b" "$r" udp64_loss "${udp#* }"
  nsx "$LG" ping -n -i 0.002 -c 2000 -W 1 -I "$SRC" "$DST" >"$f-ping.txt" 2>&1 || true
  local lat
  lat=$(python3 - "$f-ping.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rtts = sorted(float(m) * 1000.0 for m in re.findall(r"time=([0-9.]+) ms", text))
m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
sent, got = (int(m.group(1)), int(m.group(2))) if m else (2000, len(rtts))
def pct(p):
    return rtts[min(len(rtts) - 1, int(round(p / 100.0 * (len(rtts) - 1))))] if rtts else float("nan")
print("%.0f %.0f %.2f" % (pct(50), pct(99), 100.0 * (sent - got) / sent if sent else 100.0))
EOF
)
  read -r p50 p99 ploss <<<"$lat"
  result "$b" "$r" ping_p50_us "$p50"
  result "$b" "$r" ping_p99_us "$p99"
  result "$b" "$r" ping_loss "$ploss"
}

profile_sekishod() {
  echo "== profile: sekishod during a 1-stream TCP run ($OUT/profile-*)"
  backend_up sekishod
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t 8 >/dev/null &
  local client=$!
  sleep 1
  if command -v strace >/dev/null; then
    timeout -s INT 5 strace -c -f -p "$DAEMON_PID" -o "$OUT/profile-strace.txt" >/dev/null 2>&1 || true
  fi
  wait "$client" || true
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t 8 >/dev/null &
  client=$!
  sleep 1
  if command -v perf >/dev/null; then
    perf record -F 999 -g -p "$DAEMON_PID" -o "$OUT/profile-perf.data" -- sleep 5 >/dev/null 2>&1 || true
    for sort in comm dso dso,symbol; do
      echo "-- perf report --sort $sort (self time, >= 0.8%)"
      perf report -i "$OUT/profile-perf.data" --stdio --no-children -g none --sort "$sort" \
        --percent-limit 0.8 2>/dev/null | grep -v -e '^#' -e '^$' | head -25 | cut -c1-110
    done >"$OUT/profile-perf.txt" || true
  fi
  wait "$client" || true
  backend_down sekishod
  [ -s "$OUT/profile-strace.txt" ] && { echo "-- strace -c -f (5 s of sekishod under 1-stream TCP):"; head -25 "$OUT/profile-strace.txt"; }
  [ -s "$OUT/profile-perf.txt" ] && { echo "-- perf record -F 999 -g, 5 s of sekishod under 1-stream TCP:"; cat "$OUT/profile-perf.txt"; }
  return 0
}

echo "== iperf3 server on $DST:5201 in $SZ"
ip netns exec "$SZ" iperf3 -s -B "$DST" -p 5201 >"$OUT/iperf3-server.log" 2>&1 &
SERVER_PID=$!
sleep 0.5

BACKENDS=("bridge+nft" "sekishod")
for b in "${BACKENDS[@]}"; do
  backend_up "$b"
  policy_check "$b"
  backend_down "$b"
done

for r in $(seq 1 "$REPEAT"); do
  for b in "${BACKENDS[@]}"; do
    echo "== run $r/$REPEAT: $b (${DURATION} s per iperf3 test)"
    backend_up "$b"
    measure "$b" "$r"
    backend_down "$b"
  done
done

[ "$PROFILE" = 1 ] && profile_sekishod

echo
echo "== sekisho baseline: lgwan 198.18.20.5 -> 198.18.40.20 through two port pairs and the core router"
echo "   $(nproc) cores, kernel $(uname -r), duration ${DURATION} s, ${REPEAT} run(s) each, medians (min-max)"
python3 - "$OUT/results.txt" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows[(f["backend"], f["metric"])].append(float(f["value"]))
metrics = [
    # (key, label, higher is better)
    ("tcp1_gbps", "TCP 1 stream (Gbit/s)", True),
    ("tcp4_gbps", "TCP 4 streams (Gbit/s)", True),
    ("udp64_kpps", "UDP 64 B delivered (kpps)", True),
    ("udp64_loss", "UDP 64 B loss (%)", False),
    ("ping_p50_us", "ping RTT p50 (us)", False),
    ("ping_p99_us", "ping RTT p99 (us)", False),
    ("ping_loss", "ping loss (%)", False),
]
backends = ["bridge+nft", "sekishod"]
def cell(vals):
    if not vals:
        return "-"
    m = statistics.median(vals)
    return "%.3g (%.3g-%.3g)" % (m, min(vals), max(vals)) if len(vals) > 1 else "%.3g" % m
print("%-28s %-22s %-22s %s" % ("metric", "bridge+nft", "sekishod", "sekishod / bridge+nft"))
print("-" * 95)
summary = []
for key, label, higher_better in metrics:
    a = rows.get(("bridge+nft", key), [])
    b = rows.get(("sekishod", key), [])
    ratio = "-"
    if a and b and statistics.median(a) != 0 and not key.endswith("_loss"):
        ratio = "%.2f" % (statistics.median(b) / statistics.median(a))
        ratio += "  (higher is better)" if higher_better else "  (lower is better)"
    print("%-28s %-22s %-22s %s" % (label, cell(a), cell(b), ratio))
    for be, vals in (("bridge+nft", a), ("sekishod", b)):
        if vals:
            summary.append("SUMMARY backend=%s metric=%s median=%g min=%g max=%g" % (be, key, statistics.median(vals), min(vals), max(vals)))
    if ratio != "-":
        summary.append("RATIO metric=%s sekishod/bridge+nft=%s" % (key, ratio.split()[0]))
print()
print("\n".join(summary))
EOF
echo
echo "raw results: $OUT"
