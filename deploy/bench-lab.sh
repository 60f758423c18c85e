#!/usr/bin/env bash
# sekisho data-plane benchmark: one run, one lab topology, hosts' and router's offloads
# at their defaults (as virtual machines and containers have them), the same traffic
# through, interleaved (bridge, bridge+nft, pnet, afpacket-1, afpacket-2, bridge, ...):
#   bridge       — a plain Linux bridge per port pair in the gateway namespace, no filtering;
#   bridge+nft   — the same bridges with an nftables ruleset expressing configs/lab.toml's
#                  policy: conntrack (`ct state established,related accept`, new TCP only
#                  with a bare SYN), then the allowed new connections, drop the rest; the
#                  per-port anti-spoofing and the non-IP drop in a bridge-family table.
#                  Bridged IP traffic reaches the inet-family conntrack through br_netfilter
#                  (this kernel has no nf_conntrack_bridge);
#   pnet         — `sekishod run` (release build), `[daemon] io = "pnet"`;
#   afpacket-1   — `sekishod run`, `io = "afpacket"`, `workers = 1`;
#   afpacket-2   — `sekishod run`, `io = "afpacket"`, `workers = 2`;
# sekishod runs a copy of configs/lab.toml with one extra path "bench" (lgwan ->
# 198.18.40.20: TCP and UDP 5201, ICMP; app any) so that iperf3 and ping are allowed.
# The flow measured: lgwan terminal 198.18.20.5 -> file sanitiser host 198.18.40.20, which
# crosses two port pairs (lg, sz) and the core router, as real cross-zone traffic does.
#
# Measured, per backend and repetition:
#   tcp1_gbps   iperf3, 1 TCP stream, receiver throughput
#   tcp4_gbps   iperf3, 4 TCP streams (-P 4), receiver throughput
#   udp64_kpps  iperf3 -u -l 64 -b 0 (unlimited): datagrams delivered per second (thousands)
#   udp64_loss  lost datagrams at that unlimited rate, percent
#   udp64_lossfree_kpps  the highest offered rate (thousands of datagrams/s, by bisection
#               between 10 and 1000 kpps, 3 s each) delivered with at most 0.1% loss
#   ping_p50_us / ping_p99_us   ping -i 0.002 -c 2000 round-trip time percentiles (µs)
#   cpu_*       for sekishod: CPU per thread during the 1-stream TCP test (% of one core)
#
# Run (as root, from anywhere; needs iproute2 ethtool nftables iperf3 iputils-ping python3):
#   deploy/bench-lab.sh                      # 10 s per test, 3 repetitions
#   deploy/bench-lab.sh --duration 5 --repeat 1
#   deploy/bench-lab.sh --backends "bridge+nft afpacket-1"
#   deploy/bench-lab.sh --profile            # + where sekishod's time goes (afpacket-1):
#                                            #   strace -c and perf during a 1-stream TCP run
#   deploy/bench-lab.sh --sekishod PATH      # an already built binary (no cargo build)
# Output: a table for people, and machine-parsable lines:
#   RESULT backend=<b> run=<n> metric=<m> value=<v>
#   SUMMARY backend=<b> metric=<m> median=<v> min=<v> max=<v>
#   RATIO metric=<m> <b>/bridge+nft=<r> (and ping p99 against the plain bridge)
# Raw iperf3 JSON and ping output are kept in the results directory it prints.
# Cleans up after itself (lab namespaces with prefix skb-, processes it started) on exit.
set -euo pipefail

DURATION=10
REPEAT=3
PREFIX=skb-
PROFILE=0
SEKISHOD=""
UDP_RATE=0
BACKENDS_ARG="bridge bridge+nft pnet afpacket-1 afpacket-2"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    --sekishod) SEKISHOD="$2"; shift 2 ;;
    --udp-rate) UDP_RATE="$2"; shift 2 ;;
    --backends) BACKENDS_ARG="$2"; shift 2 ;;
    -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
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

bridges_up() {
  for s in mn lg in sz; do
    ip -n "$GW" link add "br-$s" type bridge stp_state 0
    ip -n "$GW" link set "$s-in" master "br-$s"
    ip -n "$GW" link set "$s-out" master "br-$s"
    ip -n "$GW" link set "br-$s" up
  done
}

bridges_down() {
  for s in mn lg in sz; do ip -n "$GW" link del "br-$s"; done
}

# The sekishod configuration for a backend: the bench config with io and workers set.
sekishod_config() {
  local io workers
  case "$1" in
    pnet) io=pnet; workers=1 ;;
    afpacket-1) io=afpacket; workers=1 ;;
    afpacket-2) io=afpacket; workers=2 ;;
  esac
  sed "s/^mode = \"enforce\"/mode = \"enforce\"\nio = \"$io\"\nworkers = $workers/" "$CONFIG" >"$OUT/$1.toml"
  echo "$OUT/$1.toml"
}

backend_up() {
  case "$1" in
    bridge)
      bridges_up
      ;;
    bridge+nft)
      bridges_up
      nsx "$GW" sysctl -q -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
      nsx "$GW" nft -f "$OUT/bench.nft"
      ;;
    pnet|afpacket-*)
      local config
      config=$(sekishod_config "$1")
      NO_COLOR=1 ip netns exec "$GW" "$SEKISHOD" run -c "$config" --control-socket "$OUT/ctl/control.sock" \
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
    bridge)
      bridges_down
      ;;
    bridge+nft)
      nsx "$GW" nft delete table inet sekisho
      nsx "$GW" nft delete table bridge sekisho_link
      nsx "$GW" sysctl -q -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
      bridges_down
      ;;
    pnet|afpacket-*)
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
  if [ "$b" != bridge ] && nsx "$LG" ping -n -q -c 1 -W 1 -I "$SRC" 203.0.113.7 >/dev/null 2>&1; then
    echo "  $b: forbidden ping lgwan -> internet 203.0.113.7 PASSED" >&2; ok=0
  fi
  [ "$ok" = 1 ] && echo "  $b: policy check ok (allowed passes, lgwan -> internet blocked)"
  [ "$ok" = 1 ]
}

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$3"; }

result() {  # backend run metric value
  echo "RESULT backend=$1 run=$2 metric=$3 value=$4" | tee -a "$OUT/results.txt"
}

# CPU ticks (user + system) per sekishod thread: "name ticks" lines.
thread_ticks() {
  [ -n "$DAEMON_PID" ] || return 0
  for t in /proc/"$DAEMON_PID"/task/*; do
    [ -r "$t/stat" ] || continue
    # comm may contain spaces: fields after the closing parenthesis.
    awk -v name="$(cat "$t/comm" 2>/dev/null)" '{ sub(/^.*\) /, ""); print name, $12 + $13 }' "$t/stat"
  done
}

# One UDP run of 64-byte datagrams at `rate` datagrams/s (0: unlimited) for `secs`
# seconds: prints "delivered_kpps loss_percent".
udp_run() {
  local rate="$1" secs="$2" file="$3"
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t "$secs" -u -l 64 -b "$((rate * 512))" -J >"$file"
  python3 - "$file" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["end"].get("sum_received") or d["end"]["sum"]
sent = d["end"].get("sum_sent", d["end"]["sum"])
packets = sent.get("packets", s.get("packets", 0))
lost = s.get("lost_packets", 0)
seconds = s.get("seconds") or sent.get("seconds") or 1
delivered = max(packets - lost, 0)
loss = 100.0 * lost / packets if packets else 100.0
print("%.1f %.3f" % (delivered / seconds / 1000.0, loss))
PY
}

# The highest rate (kpps) delivered with at most 0.1% loss, by bisection.
udp_lossfree() {
  local f="$1" lo=10 hi=1000 mid out loss
  for i in 1 2 3 4 5 6; do
    mid=$(( (lo + hi) / 2 ))
    out=$(udp_run "$((mid * 1000))" 3 "$f-lossfree-$i.json")
    loss=${out#* }
    if python3 -c "import sys; sys.exit(0 if float('$loss') <= 0.1 else 1)"; then lo=$mid; else hi=$mid; fi
  done
  echo "$lo"
}

measure() {  # backend run
  local b="$1" r="$2" f
  f="$OUT/$b-$r"
  thread_ticks >"$f-ticks-before.txt"
  local t0 t1
  t0=$(date +%s.%N)
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t "$DURATION" -J >"$f-tcp1.json"
  t1=$(date +%s.%N)
  thread_ticks >"$f-ticks-after.txt"
  result "$b" "$r" tcp1_gbps "$(json x "'%.3f' % (d['end']['sum_received']['bits_per_second']/1e9)" "$f-tcp1.json")"
  if [ -n "$DAEMON_PID" ]; then
    python3 - "$f-ticks-before.txt" "$f-ticks-after.txt" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY' >"$f-cpu.txt"
import collections, sys
def load(p):
    d = collections.Counter()
    for line in open(p):
        name, ticks = line.rsplit(" ", 1)
        d[name] += int(ticks)
    return d
before, after = load(sys.argv[1]), load(sys.argv[2])
secs, hz = float(sys.argv[4]) - float(sys.argv[3]), int(sys.argv[5])
for name in sorted(after):
    used = (after[name] - before.get(name, 0)) / hz / secs * 100.0
    if used >= 0.5:
        print(name.replace(" ", "_"), "%.0f" % used)
PY
    while read -r name pct; do result "$b" "$r" "cpu_${name}" "$pct"; done <"$f-cpu.txt"
  fi
  nsx "$LG" iperf3 -c "$DST" -B "$SRC" -t "$DURATION" -P 4 -J >"$f-tcp4.json"
  result "$b" "$r" tcp4_gbps "$(json x "'%.3f' % (d['end']['sum_received']['bits_per_second']/1e9)" "$f-tcp4.json")"
  local udp
  udp=$(udp_run "$UDP_RATE" "$DURATION" "$f-udp64.json")
  result "$b" "$r" udp64_kpps "${udp% *}"
  result "$b" "$r" udp64_loss "${udp#* }"
  result "$b" "$r" udp64_lossfree_kpps "$(udp_lossfree "$f")"
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
  backend_up afpacket-1
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
    # System-wide (both cores: the daemon, the kernel's veth and routing work, iperf3),
    # on the software clock (this VM has no hardware counters).
    perf record -e cpu-clock -F 999 -a -g -o "$OUT/profile-perf.data" -- sleep 5 >/dev/null 2>&1 || true
    for sort in comm dso,symbol; do
      echo "-- perf report --sort $sort (self time, >= 0.8%)"
      perf report -i "$OUT/profile-perf.data" --stdio --no-children -g none --sort "$sort" \
        --percent-limit 0.8 2>/dev/null | grep -v -e '^#' -e '^$' | head -40 | cut -c1-120
    done >"$OUT/profile-perf.txt" || true
  fi
  wait "$client" || true
  backend_down afpacket-1
  [ -s "$OUT/profile-strace.txt" ] && { echo "-- strace -c -f (5 s of sekishod under 1-stream TCP):"; head -25 "$OUT/profile-strace.txt"; }
  [ -s "$OUT/profile-perf.txt" ] && { echo "-- perf record -e cpu-clock -a, 5 s of both cores under 1-stream TCP through sekishod:"; cat "$OUT/profile-perf.txt"; }
  return 0
}

echo "== iperf3 server on $DST:5201 in $SZ"
ip netns exec "$SZ" iperf3 -s -B "$DST" -p 5201 >"$OUT/iperf3-server.log" 2>&1 &
SERVER_PID=$!
sleep 0.5

read -r -a BACKENDS <<<"$BACKENDS_ARG"
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
echo "== sekisho data plane: lgwan 198.18.20.5 -> 198.18.40.20 through two port pairs and the core router"
echo "   $(nproc) cores, kernel $(uname -r), hosts' offloads at their defaults, duration ${DURATION} s,"
echo "   ${REPEAT} run(s) each, backends interleaved; medians (min-max)"
python3 - "$OUT/results.txt" "${BACKENDS[@]}" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows[(f["backend"], f["metric"])].append(float(f["value"]))
backends = sys.argv[2:]
metrics = [
    ("tcp1_gbps", "TCP 1 stream (Gbit/s)"),
    ("tcp4_gbps", "TCP 4 streams (Gbit/s)"),
    ("udp64_kpps", "UDP 64 B delivered (kpps)"),
    ("udp64_loss", "UDP 64 B loss (%)"),
    ("udp64_lossfree_kpps", "UDP 64 B loss-free (kpps)"),
    ("ping_p50_us", "ping RTT p50 (us)"),
    ("ping_p99_us", "ping RTT p99 (us)"),
]
cpu = sorted({m for (_, m) in rows if m.startswith("cpu_")})
metrics += [(m, "CPU %s (%% of a core)" % m[4:]) for m in cpu]
def cell(vals):
    if not vals:
        return "-"
    m = statistics.median(vals)
    return "%.3g (%.3g-%.3g)" % (m, min(vals), max(vals)) if len(vals) > 1 else "%.3g" % m
width = 20
print("%-30s " % "metric" + " ".join("%-*s" % (width, b) for b in backends))
print("-" * (31 + (width + 1) * len(backends)))
summary = []
for key, label in metrics:
    print("%-30s " % label + " ".join("%-*s" % (width, cell(rows.get((b, key), []))) for b in backends))
    for b in backends:
        vals = rows.get((b, key), [])
        if vals:
            summary.append("SUMMARY backend=%s metric=%s median=%g min=%g max=%g" % (b, key, statistics.median(vals), min(vals), max(vals)))
print()
def med(b, k):
    v = rows.get((b, k), [])
    return statistics.median(v) if v else None
print("ratios (medians; throughput: higher is better, latency: lower is better)")
for key, label in metrics[:7]:
    if key.endswith("_loss"):
        continue
    base = "bridge" if key == "ping_p99_us" or key == "ping_p50_us" else "bridge+nft"
    ref = med(base, key)
    if not ref:
        continue
    parts = []
    for b in backends:
        v = med(b, key)
        if v is not None and b != base:
            parts.append("%s %.2f" % (b, v / ref))
            summary.append("RATIO metric=%s %s/%s=%.2f" % (key, b, base, v / ref))
    print("  %-28s vs %-10s %s" % (label, base, ", ".join(parts)))
print()
print("\n".join(summary))
EOF
echo
echo "raw results: $OUT"
