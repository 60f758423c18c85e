#!/usr/bin/env python3
"""sekisho lab: send raw Ethernet frames out of an interface (AF_PACKET).

The end-to-end tests build frames with sekisho-testkit (mid-stream TCP, non-IP
ethertypes, tunnels) and send them from a host namespace toward the gateway:

    ip netns exec sk-lg python3 send_frame.py --dev eth0 --hex 0200...0800... [--count 3]

Standard library only; needs CAP_NET_RAW (root).
"""
import argparse
import socket
import sys
import time

MAX_FRAME = 9216


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", required=True, help="interface to send on")
    parser.add_argument("--hex", required=True, help="the whole frame, hex (from the destination MAC on)")
    parser.add_argument("--count", type=int, default=1, help="how many copies (1-100)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between copies")
    args = parser.parse_args()
    try:
        frame = bytes.fromhex(args.hex)
    except ValueError as e:
        print(f"send_frame: bad hex: {e}", file=sys.stderr)
        return 2
    if not 14 <= len(frame) <= MAX_FRAME:
        print(f"send_frame: a frame is 14 to {MAX_FRAME} bytes, not {len(frame)}", file=sys.stderr)
        return 2
    count = max(1, min(args.count, 100))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((args.dev, 0))
        for i in range(count):
            s.send(frame)
            if i + 1 < count:
                time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
