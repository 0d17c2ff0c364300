#!/usr/bin/env python3
"""tlsobserve.py PORTLO PORTHI - print every TLS handshake to or from a port range on lo.

compare.sh runs it with TLS=1 to see whether a proxy resumes its TLS sessions
to the backends: neither the grpc-go backends nor every proxy count resumed
handshakes, but the ClientHello and (in TLS 1.3) the ServerHello are
plaintext. One line per hello, flushed:

    <unix time> CH <client port> <server port> <1 if it offers resumption>
    <unix time> SH <server port> <client port> <1 if the server resumed>

A ClientHello offers resumption with a pre_shared_key extension (TLS 1.3) or a
non-empty session_ticket (TLS 1.2); a TLS 1.3 ServerHello resumed when it
carries pre_shared_key. A kernel filter passes only TCP segments to or from
the port range, so the rest of the loopback traffic costs nothing here.
Needs CAP_NET_RAW (root); IPv4 only.
"""
import ctypes
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
EXT_SESSION_TICKET, EXT_PSK = 35, 41


def port_filter(lo, hi):
    """Classic BPF: accept TCP whose source or destination port is in [lo, hi]."""
    prog = [
        (0x30, 0, 0, 9),       # ldb [9]            IP protocol
        (0x15, 0, 8, 6),       # jeq #6 (TCP)       else drop
        (0xB1, 0, 0, 0),       # ldxb 4*([0]&0xf)   IP header length
        (0x48, 0, 0, 0),       # ldh [x+0]          source port
        (0x35, 0, 1, lo),      # jge lo             else check destination
        (0x25, 0, 3, hi),      # jgt hi             else accept
        (0x48, 0, 0, 2),       # ldh [x+2]          destination port
        (0x35, 0, 2, lo),      # jge lo             else drop
        (0x25, 1, 0, hi),      # jgt hi ? drop : accept
        (0x06, 0, 0, 0x40000), # accept
        (0x06, 0, 0, 0),       # drop
    ]
    raw = b"".join(struct.pack("HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(raw)
    return buf, struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))


def extensions(hs, server):
    """Extension map of a ClientHello (server=False) or ServerHello body."""
    p = 2 + 32                              # version, random
    p += 1 + hs[p]                          # session id
    if server:
        p += 2 + 1                          # cipher suite, compression
    else:
        p += 2 + struct.unpack_from("!H", hs, p)[0]
        p += 1 + hs[p]
    end = p + 2 + struct.unpack_from("!H", hs, p)[0]
    p += 2
    ext = {}
    while p + 4 <= min(end, len(hs)):
        t, n = struct.unpack_from("!HH", hs, p)
        ext[t] = hs[p + 4:p + 4 + n]
        p += 4 + n
    return ext


def main():
    lo, hi = int(sys.argv[1]), int(sys.argv[2])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    buf, fprog = port_filter(lo, hi)
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    s.bind(("lo", ETH_P_IP))
    print(f"{time.time():.6f} READY {lo} {hi} 0", flush=True)
    while True:
        pkt, addr = s.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:      # loopback shows each segment twice
            continue
        ihl = (pkt[0] & 0xF) * 4
        sport, dport = struct.unpack_from("!HH", pkt, ihl)
        data = pkt[ihl + (pkt[ihl + 12] >> 4) * 4:]
        if len(data) < 10 or data[0] != 0x16 or data[5] not in (1, 2):
            continue
        try:
            ext = extensions(data[9:], server=data[5] == 2)
        except (struct.error, IndexError):
            continue
        if data[5] == 1:
            res = EXT_PSK in ext or len(ext.get(EXT_SESSION_TICKET, b"")) > 0
            print(f"{time.time():.6f} CH {sport} {dport} {int(res)}", flush=True)
        else:
            print(f"{time.time():.6f} SH {sport} {dport} {int(EXT_PSK in ext)}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
