#!/usr/bin/env python3
"""Prints an NFSv3 file handle as hex:..., for nlm4_client's FH arguments.

    fh_lookup.py [--host 127.0.0.1] [--mount-port 20048] [--nfs-port 2049] EXPORT_PATH NAME

MOUNT v3 MNT of EXPORT_PATH (RFC 1813, Appendix I), then NFSv3 LOOKUP of NAME in
that directory, both over TCP with AUTH_SYS (uid 0, gid 0). Standard library only,
so it runs anywhere python3 does. A lock manager such as NFS-Ganesha's only
accepts handles its NFS server issued, which is why a test needs this.
"""
import argparse
import os
import socket
import struct
import sys

MOUNT_PROG, MOUNT_V3, MOUNTPROC3_MNT = 100005, 3, 1
NFS_PROG, NFS_V3, NFSPROC3_LOOKUP = 100003, 3, 3
AUTH_SYS = 1


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def opaque(b):
    return struct.pack(">I", len(b)) + pad(b)


def auth_sys():
    body = struct.pack(">I", 0) + opaque(b"brlock-fh-lookup") + struct.pack(">III", 0, 0, 0)
    return struct.pack(">I", AUTH_SYS) + opaque(body)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def u32(self):
        (v,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return v

    def opaque(self):
        n = self.u32()
        v = self.data[self.pos:self.pos + n]
        self.pos += n + (-n % 4)
        return v


def connect(host, port):
    # Some servers want MOUNT from a reserved port; try one when running as root.
    if os.geteuid() == 0:
        for p in range(1023, 600, -1):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, p))
                s.connect((host, port))
                return s
            except OSError:
                s.close()
    return socket.create_connection((host, port))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("fh_lookup: connection closed by server")
        buf += chunk
    return buf


def rpc_call(host, port, prog, vers, proc, args, xid):
    call = struct.pack(">IIIIII", xid, 0, 2, prog, vers, proc) + auth_sys() + struct.pack(">II", 0, 0) + args
    with connect(host, port) as s:
        s.sendall(struct.pack(">I", 0x80000000 | len(call)) + call)
        reply = b""
        while True:
            (mark,) = struct.unpack(">I", recv_exact(s, 4))
            reply += recv_exact(s, mark & 0x7FFFFFFF)
            if mark & 0x80000000:
                break
    r = Reader(reply)
    if r.u32() != xid or r.u32() != 1:
        raise SystemExit("fh_lookup: not a reply to our call")
    if r.u32() != 0:
        raise SystemExit("fh_lookup: RPC call denied")
    r.u32(), r.opaque()  # verifier
    accept = r.u32()
    if accept != 0:
        raise SystemExit(f"fh_lookup: RPC accept_stat {accept} from program {prog}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mount-port", type=int, default=20048)
    ap.add_argument("--nfs-port", type=int, default=2049)
    ap.add_argument("export")
    ap.add_argument("name")
    a = ap.parse_args()

    r = rpc_call(a.host, a.mount_port, MOUNT_PROG, MOUNT_V3, MOUNTPROC3_MNT, opaque(a.export.encode()), 1)
    status = r.u32()
    if status != 0:
        raise SystemExit(f"fh_lookup: MNT {a.export}: mountstat3 {status}")
    dir_fh = r.opaque()

    r = rpc_call(a.host, a.nfs_port, NFS_PROG, NFS_V3, NFSPROC3_LOOKUP, opaque(dir_fh) + opaque(a.name.encode()), 2)
    status = r.u32()
    if status != 0:
        raise SystemExit(f"fh_lookup: LOOKUP {a.name}: nfsstat3 {status}")
    print("hex:" + r.opaque().hex())


if __name__ == "__main__":
    sys.exit(main())
