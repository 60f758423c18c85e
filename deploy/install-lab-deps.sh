#!/usr/bin/env bash
# Installs (Debian/Ubuntu, as root) the programs the lab and the end-to-end tests use:
# iproute2 and ethtool to build the topology; real clients and servers (curl, socat,
# netcat, swaks, iperf3, ping, openssl, python3, tcpdump); nftables for the baseline
# benchmark; rsyslog, the real collector of sekisho-alert's tests; useradd and setpriv
# (real users for the control socket's permission tests); systemd-analyze (the unit's
# security score in docs/operations.md).
set -euo pipefail
# command → Debian package
wanted="ip:iproute2 ethtool:ethtool curl:curl socat:socat nc:netcat-openbsd swaks:swaks
iperf3:iperf3 ping:iputils-ping openssl:openssl python3:python3 nft:nftables
tcpdump:tcpdump sysctl:procps rsyslogd:rsyslog useradd:passwd setpriv:util-linux
systemd-analyze:systemd"
missing=()
for pair in $wanted; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${missing[*]}; run this script as root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
