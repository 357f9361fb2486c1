# tlsprobe.py HOST PORT T0_NS MAXWAIT: connect to HOST:PORT, retrying every
# 2 ms while nothing listens (at most MAXWAIT seconds), then a TLS handshake
# without verification: the first bytes from the server through whatever
# forwards the port. Prints "ok MS_TCP MS_TLS" (milliseconds since T0_NS, a
# CLOCK_REALTIME time in ns, e.g. `date +%s%N` before the forwarder was
# started), or "fail REASON". The server may refuse us afterwards (no
# client certificate): a handshake the client side completed counts.
import socket, ssl, sys, time
host, port, t0, maxwait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ms = lambda: (time.time_ns() - t0) / 1e6
deadline = time.monotonic() + maxwait
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
while True:
    s = socket.socket()
    s.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        s.connect((host, port))
        break
    except (ConnectionRefusedError, ConnectionResetError):
        s.close()
        if time.monotonic() >= deadline:
            print('fail nothing listens on %s:%d' % (host, port))
            sys.exit(1)
        time.sleep(0.002)
    except OSError as e:
        print('fail connect: %s' % e)
        sys.exit(1)
tcp = ms()
try:
    t = ctx.wrap_socket(s, server_hostname=None)
    t.close()
except (OSError, ssl.SSLError) as e:
    print('fail handshake: %s' % str(e).replace('\n', ' ')[:200])
    sys.exit(1)
print('ok %.1f %.1f' % (tcp, ms()))
