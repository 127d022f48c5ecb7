"""Steady, bounded, numbered streams for the handover and restart figures.

udp-recv ADDR PORT IDLE      print 'ready', count datagrams until IDLE s pass
                             without one (at most 120 s); print a JSON line:
                             received, unique, highest sequence, missing, the
                             longest gap between two arrivals (ms), the
                             first missing ranges, and the datagrams the
                             receiving namespace's kernel dropped for a full
                             socket buffer (receiver_drops: not the router's)
udp-send ADDR PORT N RATE    send N datagrams numbered 0..N-1 (64 bytes) at
                             RATE per second, paced every millisecond; one
                             the kernel refuses is skipped, never retried
tcp-recv ADDR PORT           print 'ready', accept one connection, read to
                             EOF (at most 120 s); print a JSON line: bytes
                             and the longest stall between two reads (ms)
tcp-send ADDR PORT SECS RATE send RATE bytes per second for SECS seconds in
                             1 ms chunks, then close
"""
import json, socket, struct, sys, time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET

if mode == 'udp-recv':
    idle = float(sys.argv[4])
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        # Root may pass net.core.rmem_max: a receiver descheduled for a
        # few ms must not drop what the router delivered.
        s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((addr, port))
    def rcvbuf_errors():
        lines = [l.split() for l in open('/proc/net/snmp') if l.startswith('Udp:')]
        return int(dict(zip(lines[0], lines[1])).get('RcvbufErrors', 0))
    errors0 = rcvbuf_errors()
    print('ready', flush=True)
    seen = set()
    got = 0
    last = None
    gap = 0.0
    start = time.monotonic()
    s.settimeout(30)
    while time.monotonic() - start < 120:
        try:
            data = s.recv(2048)
        except socket.timeout:
            break
        now = time.monotonic()
        if last is not None:
            gap = max(gap, now - last)
        last = now
        s.settimeout(idle)
        got += 1
        if len(data) >= 8:
            seen.add(struct.unpack('!Q', data[:8])[0])
    top = max(seen) if seen else -1
    missing = []
    prev = -1
    for q in sorted(seen):
        if q != prev + 1:
            missing.append([prev + 1, q - 1])
        prev = q
    print(json.dumps({
        'received': got, 'unique': len(seen), 'highest': top,
        'missing': sum(b - a + 1 for a, b in missing),
        'max_gap_ms': round(gap * 1e3, 3), 'missing_ranges': missing[:10],
        'receiver_drops': rcvbuf_errors() - errors0,
    }), flush=True)
elif mode == 'udp-send':
    n, rate = int(sys.argv[4]), int(sys.argv[5])
    s = socket.socket(fam, socket.SOCK_DGRAM)
    pad = b'\0' * 56
    start = time.monotonic()
    sent = 0
    while sent < n:
        due = min(n, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            try:
                s.sendto(struct.pack('!Q', sent) + pad, (addr, port))
            except OSError:
                # A send the kernel refuses (no route while the port is
                # down) is a lost datagram, not a retry: the receiver
                # counts it missing.
                pass
            sent += 1
        time.sleep(0.001)
elif mode == 'tcp-recv':
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1)
    ls.settimeout(30)
    print('ready', flush=True)
    c, _ = ls.accept()
    c.settimeout(30)
    total = 0
    last = None
    stall = 0.0
    start = time.monotonic()
    while time.monotonic() - start < 120:
        b = c.recv(65536)
        if not b:
            break
        now = time.monotonic()
        if last is not None:
            stall = max(stall, now - last)
        last = now
        total += len(b)
    print(json.dumps({'bytes': total, 'max_stall_ms': round(stall * 1e3, 3)}), flush=True)
elif mode == 'tcp-send':
    secs, rate = float(sys.argv[4]), int(sys.argv[5])
    chunk = b'x' * max(1, rate // 1000)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(30)
    for _ in range(50):
        try:
            s.connect((addr, port))
            break
        except ConnectionRefusedError:
            s.close(); time.sleep(0.1); s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(30)
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < secs:
        due = int((time.monotonic() - start) * 1000) + 1
        while k < due:
            s.sendall(chunk)
            k += 1
        time.sleep(0.001)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
else:
    sys.exit('unknown mode ' + mode)
