#!/usr/bin/env python3
"""sekisho lab: send raw Ethernet frames out of an interface (AF_PACKET).

The end-to-end tests build frames with sekisho-testkit (mid-stream TCP, non-IP
ethertypes, tunnels) and send them from a host namespace toward the gateway:

    ip netns exec sk-lg python3 send_frame.py --dev eth0 --hex 0200...0800... [--count 3]

Several --hex frames are sent in turn, --count frames in all; --rate paces a flood
(frames per second), e.g. 100,000 forbidden frames from 64 sources for the alert tests:

    ip netns exec sk-lg python3 send_frame.py --dev eth0 --hex F1 --hex F2 ... --count 100000 --rate 20000

--hex-file takes the frames from a file, one hex frame a line (too many for a command
line: a SYN flood from thousands of sources); each is sent once, back to back, unless
--count says otherwise:

    ip netns exec sk-in python3 send_frame.py --dev eth0 --hex-file frames.txt

Standard library only; needs CAP_NET_RAW (root).
"""
import argparse
import errno
import socket
import sys
import time

MAX_FRAME = 9216
MAX_COUNT = 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", required=True, help="interface to send on")
    parser.add_argument("--hex", action="append", default=[],
                        help="a whole frame, hex (from the destination MAC on); several are sent in turn")
    parser.add_argument("--hex-file", help=f"a file of frames, one hex frame a line (at most {MAX_COUNT:,})")
    parser.add_argument("--count", type=int, default=None,
                        help=f"how many frames in all (1-{MAX_COUNT:,}; default: 1, or each frame of --hex-file once)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between frames (without --rate)")
    parser.add_argument("--rate", type=float, default=0.0, help="frames per second (a flood); overrides --interval")
    args = parser.parse_args()
    texts = list(args.hex)
    if args.hex_file:
        with open(args.hex_file) as f:
            texts += [line.strip() for n, line in zip(range(MAX_COUNT), f) if line.strip()]
    if not texts:
        print("send_frame: --hex or --hex-file is needed", file=sys.stderr)
        return 2
    frames = []
    for text in texts:
        try:
            frame = bytes.fromhex(text)
        except ValueError as e:
            print(f"send_frame: bad hex: {e}", file=sys.stderr)
            return 2
        if not 14 <= len(frame) <= MAX_FRAME:
            print(f"send_frame: a frame is 14 to {MAX_FRAME} bytes, not {len(frame)}", file=sys.stderr)
            return 2
        frames.append(frame)
    if args.count is None:
        args.count = len(frames) if args.hex_file else 1
        if args.hex_file and args.rate == 0:
            args.interval = 0.0
    count = max(1, min(args.count, MAX_COUNT))
    started = time.monotonic()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((args.dev, 0))
        for i in range(count):
            while True:
                try:
                    s.send(frames[i % len(frames)])
                    break
                except OSError as e:  # the device queue is full: wait for room
                    if e.errno != errno.ENOBUFS:
                        raise
                    time.sleep(0.001)
            if i + 1 == count:
                break
            if args.rate > 0:
                ahead = (i + 1) / args.rate - (time.monotonic() - started)
                if ahead > 0.002:
                    time.sleep(ahead)
            else:
                time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
