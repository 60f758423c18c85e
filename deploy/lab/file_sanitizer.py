#!/usr/bin/env python3
"""sekisho lab: the file sanitiser (ファイル無害化, a CDR stand-in) and a plain HTTPS web server.

Real TLS (the gateway checks that the https service really carries TLS). Standard
library only. Started by `sekishod lab up`; by hand:

    python3 file_sanitizer.py --role cdr --listen 198.18.40.20:443 \
        --cert cert.pem --key key.pem --store /tmp/files

Role `cdr` (the sanitisation zone's file sanitiser, path "file-sanitize" of lab.toml):
    POST /sanitize          body = a file; answers its sanitised version
    PUT|POST /files/NAME    stores the sanitised version of the body under NAME
                            (the internet side brings a file in)
    GET /files/NAME         the sanitised copy (LGWAN staff take it out)
    GET /                   a one-line description
Role `web` (an internet-zone web server): GET / answers a one-line page.

Sanitising (content disarm and reconstruction, lab-sized): text (UTF-8) keeps its
text with HTML/XML markup, scripts and control characters removed; anything else
(documents, executables, archives) is replaced by a text notice naming its type, size
and SHA-256, so no active content crosses. Every answer carries
`X-Sekisho-Sanitized: file-cdr; kind=text|binary-replaced`.

Bounds: uploads up to 4 MiB, at most 256 stored files, names [A-Za-z0-9._-]{1,64},
32 concurrent connections, 10 s socket timeout.
"""
import argparse
import hashlib
import http.server
import os
import re
import socket
import socketserver
import ssl
import sys
import threading

MAX_UPLOAD = 4 << 20
MAX_FILES = 256
MAX_CONNECTIONS = 32
TIMEOUT = 10
NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
TAG = re.compile(r"<[^>]*>")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAGIC = [
    (b"%PDF", "pdf"),
    (b"PK\x03\x04", "zip/office"),
    (b"MZ", "windows-executable"),
    (b"\x7fELF", "elf-executable"),
    (b"\xd0\xcf\x11\xe0", "ole/office"),
    (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpeg"),
]


def sanitize(data: bytes):
    """Returns (sanitised bytes, kind)."""
    kind = next((k for magic, k in MAGIC if data.startswith(magic)), None)
    if kind is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            kind = "binary"
        else:
            text = SCRIPT.sub("", text)
            text = COMMENT.sub("", text)
            text = TAG.sub("", text)
            text = CONTROL.sub("", text)
            return text.encode("utf-8"), "text"
    digest = hashlib.sha256(data).hexdigest()
    notice = (
        f"[sekisho file-cdr] the original ({kind}, {len(data)} bytes, sha256 {digest}) "
        "was removed: only text content may cross into LGWAN.\n"
    )
    return notice.encode("utf-8"), "binary-replaced"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "sekisho-lab-cdr/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def reply(self, code, body: bytes, headers=None):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def read_body(self):
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_UPLOAD:
            self.reply(413, b"upload too large or without a valid Content-Length\n")
            return None
        return self.rfile.read(length)

    def store_path(self, name):
        if not NAME.match(name) or name.startswith("."):
            return None
        return os.path.join(self.server.store, name)

    def do_GET(self):
        role = self.server.role
        if self.path == "/":
            where = "%s:%d" % self.server.server_address[:2]
            if role == "web":
                body = f"sekisho lab web server at {where}\n"
            else:
                body = f"sekisho lab file sanitiser at {where}: POST /sanitize, PUT /files/NAME, GET /files/NAME\n"
            self.reply(200, body.encode())
            return
        if role == "cdr" and self.path.startswith("/files/"):
            path = self.store_path(self.path[len("/files/"):])
            if path is None:
                self.reply(400, b"bad file name\n")
                return
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_UPLOAD + 1024)
            except OSError:
                self.reply(404, b"no such file\n")
                return
            self.reply(200, data, {"X-Sekisho-Sanitized": "file-cdr; stored"})
            return
        self.reply(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        if self.server.role != "cdr":
            self.reply(405, b"method not allowed\n")
            return
        body = self.read_body()
        if body is None:
            return
        clean, kind = sanitize(body)
        headers = {"X-Sekisho-Sanitized": f"file-cdr; kind={kind}"}
        if self.path == "/sanitize":
            self.reply(200, clean, headers)
            return
        if self.path.startswith("/files/"):
            path = self.store_path(self.path[len("/files/"):])
            if path is None:
                self.reply(400, b"bad file name\n")
                return
            with self.server.lock:
                if not os.path.exists(path) and len(os.listdir(self.server.store)) >= MAX_FILES:
                    self.reply(507, b"store full\n")
                    return
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(clean)
                os.replace(tmp, path)
            self.reply(201, f"stored {len(clean)} bytes ({kind})\n".encode(), headers)
            return
        self.reply(404, b"not found\n")

    do_PUT = do_POST


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, family, context, role, store):
        self.address_family = family
        super().__init__(address, Handler)
        self.context = context
        self.role = role
        self.store = store
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def server_bind(self):
        # HTTPServer.server_bind asks for the FQDN: a DNS lookup that times out in a lab
        # namespace. The name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(TIMEOUT)
        # The handshake happens on first read, in the request's own thread.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            request.do_handshake()
            super().process_request_thread(request, client_address)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write(f"{client_address[0]}: {e}\n")
            self.shutdown_request(request)
        finally:
            self.slots.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["cdr", "web"], default="cdr")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT ([v6]:port for IPv6)")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--store", default="files", help="where stored files go (role cdr)")
    parser.add_argument("--ready-file", help="created once listening")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    os.makedirs(args.store, mode=0o700, exist_ok=True)
    server = Server((host, int(port)), family, context, args.role, args.store)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    sys.stderr.write(f"{args.role} listening on {args.listen}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
