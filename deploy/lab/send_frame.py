#!/usr/bin/env python3
"""sekisho lab: send raw Ethernet frames out of an interface (AF_PACKET).

The end-to-end tests build frames with sekisho-testkit (mid-stream TCP, non-IP
ethertypes, tunnels) and send them from a host namespace toward the gateway:

    ip netns exec sk-lg python3 send_frame.py --dev eth0 --hex 0200...0800... [--count 3]
    ip netns exec sk-in python3 send_frame.py --dev eth0 --hex-file frames.txt   # one frame a line, at once

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
    parser.add_argument("--hex", help="the whole frame, hex (from the destination MAC on)")
    parser.add_argument("--hex-file", help="a file of frames, one hex frame a line (at most 100000), sent back to back")
    parser.add_argument("--count", type=int, default=1, help="how many copies (1-100)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between copies")
    args = parser.parse_args()
    if args.hex_file:
        return send_file(args.dev, args.hex_file)
    if not args.hex:
        print("send_frame: --hex or --hex-file is needed", file=sys.stderr)
        return 2
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


def send_file(dev: str, path: str) -> int:
    frames = []
    with open(path) as f:
        for n, line in enumerate(f):
            if n >= 100000:
                break
            try:
                frame = bytes.fromhex(line.strip())
            except ValueError as e:
                print(f"send_frame: line {n + 1}: bad hex: {e}", file=sys.stderr)
                return 2
            if not 14 <= len(frame) <= MAX_FRAME:
                print(f"send_frame: line {n + 1}: a frame is 14 to {MAX_FRAME} bytes", file=sys.stderr)
                return 2
            frames.append(frame)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((dev, 0))
        for frame in frames:
            s.send(frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
