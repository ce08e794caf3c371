"""Helpers for test_security.py: test certificates (openssl CLI), TLS clients, raw sockets from a
non-loopback source address, log scans and bounded "stays so" observations.

Nothing here starts a long-lived process: servers are started through the harness' Cluster, so
its teardown stops them by pid.
"""

import os
import socket
import ssl
import subprocess
import time

import redis

import harness as h

OPENSSL = os.environ.get("OPENSSL", "/usr/bin/openssl")

# --------------------------------------------------------------------------------------------
# certificates


class Certs:
    """A CA, a server certificate (SAN DNS:localhost, IP:127.0.0.1) and a client certificate both
    signed by it, and a second, unrelated CA with a certificate of its own (the "wrong CA" cases).
    Every file is PEM, in `dir`. Leaf certificates carry serverAuth and clientAuth, as Redis uses
    one certificate for both roles unless told otherwise."""

    def __init__(self, dir_):
        self.dir = str(dir_)
        os.makedirs(self.dir, exist_ok=True)
        self.ca, self.ca_key = self._ca("ca", "cascade test CA")
        self.server, self.server_key = self._leaf("server", "localhost", self.ca, self.ca_key,
                                                  san="DNS:localhost,IP:127.0.0.1")
        self.client, self.client_key = self._leaf("client", "cascade test client", self.ca,
                                                  self.ca_key)
        self.other_ca, self.other_ca_key = self._ca("other-ca", "unrelated CA")
        # a certificate that looks right (same names) but is signed by the unrelated CA
        self.rogue, self.rogue_key = self._leaf("rogue", "localhost", self.other_ca,
                                                self.other_ca_key,
                                                san="DNS:localhost,IP:127.0.0.1")

    def _p(self, name):
        return os.path.join(self.dir, name)

    def _run(self, args):
        p = subprocess.run([OPENSSL] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30, cwd=self.dir)
        if p.returncode != 0:
            raise AssertionError("openssl %s failed:\n%s" % (" ".join(args),
                                                             p.stdout.decode(errors="replace")))

    def _ca(self, name, cn):
        crt, key = self._p(name + ".crt"), self._p(name + ".key")
        self._run(["req", "-x509", "-new", "-nodes", "-newkey", "ec",
                   "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", crt,
                   "-days", "3", "-subj", "/O=cascade tests/CN=" + cn,
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        return crt, key

    def _leaf(self, name, cn, ca, ca_key, san=None):
        crt, key, csr = self._p(name + ".crt"), self._p(name + ".key"), self._p(name + ".csr")
        ext = self._p(name + ".ext")
        self._run(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", csr,
                   "-subj", "/O=cascade tests/CN=" + cn])
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
            if san:
                f.write("subjectAltName=%s\n" % san)
        self._run(["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                   "-out", crt, "-days", "3", "-sha256", "-extfile", ext])
        return crt, key


# --------------------------------------------------------------------------------------------
# TLS clients


def tls_client(port, certs, client_cert=True, timeout=5.0, password=None, username=None):
    """redis-py client over TLS to 127.0.0.1:port, verifying the server against certs.ca,
    presenting certs.client (if client_cert)."""
    kw = {}
    if client_cert:
        kw.update(ssl_certfile=certs.client, ssl_keyfile=certs.client_key)
    return redis.Redis(host=h.HOST, port=port, decode_responses=True, socket_timeout=timeout,
                       socket_connect_timeout=timeout, ssl=True, ssl_ca_certs=certs.ca,
                       ssl_cert_reqs="required", password=password, username=username, **kw)


def tls_context(certs, client_cert=True, ca=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or certs.ca)
    ctx.check_hostname = False  # the relay's certificate is checked against the CA only
    if client_cert:
        ctx.load_cert_chain(certs.client, certs.client_key)
    return ctx


def tls_exchange(port, payload, certs, client_cert=True, timeout=3.0, lines=1):
    """Like harness.raw_exchange over TLS. Returns (data, closed, error): error is the exception
    text when the TLS handshake or the I/O failed (the peer refused us), else None."""
    ctx = tls_context(certs, client_cert)
    raw = socket.create_connection((h.HOST, port), timeout=timeout)
    data, closed, error = b"", False, None
    try:
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            return data, True, "handshake: %r" % (e,)
        try:
            s.sendall(payload)
            deadline = time.monotonic() + timeout
            while data.lstrip(b"\n").count(b"\r\n") < lines:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
        except (ssl.SSLError, OSError) as e:
            # TLS 1.3: a refused client certificate shows up at the first read, not in the
            # handshake
            closed, error = True, "io: %r" % (e,)
        finally:
            s.close()
    finally:
        raw.close()
    return data, closed, error


# --------------------------------------------------------------------------------------------
# addresses and raw sockets


def non_loopback_ipv4():
    """This machine's own non-loopback IPv4 address, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        ip = s.getsockname()[0]
    except OSError:
        ip = None
    finally:
        s.close()
    if ip and not ip.startswith("127.") and ip != "0.0.0.0":
        return ip
    try:
        out = subprocess.run(["hostname", "-I"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=5).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    for tok in out.split():
        if tok.count(".") == 3 and not tok.startswith("127."):
            return tok
    return None


def abort_close(sock):
    """Close with RST (SO_LINGER 0): the abrupt hang-up of a crashed client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()


# --------------------------------------------------------------------------------------------
# observations


def stays(cond, seconds, what, interval=0.1, describe=None):
    """Assert that cond() holds at every poll for `seconds` (a bounded observation window, used
    for "the link stays down"). Returns the number of polls."""
    deadline = time.monotonic() + seconds
    polls = 0
    for _ in range(int(seconds / interval) + 2):
        v = cond()
        polls += 1
        if not v:
            msg = "%s stopped holding after %d polls (value %r)" % (what, polls, v)
            if describe is not None:
                msg += "\n" + describe()
            raise AssertionError(msg)
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return polls


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def relay_log(relay):
    return read_text(relay.stderr_path)


def redis_log(node):
    return read_text(os.path.join(node.dir, "redis.log"))


def link_status(node):
    try:
        return node.info("replication").get("master_link_status")
    except redis.RedisError as e:
        return "error: %r" % (e,)


# --------------------------------------------------------------------------------------------
# a raw RESP connection


class RespError(str):
    """An error reply (kept as a value, not raised: tests compare them)."""


class RespConn:
    """One raw connection to a relay: send bytes or commands, read whole RESP replies, watch for
    the peer closing. Every read is bounded by `timeout`."""

    def __init__(self, port, host=h.HOST, timeout=5.0, sock=None):
        self.timeout = timeout
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def command(self, *args, timeout=None):
        self.send(encode(*args))
        return self.reply(timeout)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise h.WaitTimeout("no complete reply within %.1fs (have %r)"
                                % (self.timeout, self.buf[:200]))
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise h.WaitTimeout("no complete reply within %.1fs (have %r)"
                                % (self.timeout, self.buf[:200])) from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionError("connection closed by the relay (have %r)" % (self.buf[:200],))
        self.buf += chunk

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _value(self, deadline):
        line = self._line(deadline)
        while line == b"" or line == b"\n":  # keepalive newlines before a reply
            line = self._line(deadline)
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode(errors="replace")
        if t == b"-":
            return RespError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill(deadline)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._value(deadline) for _ in range(n)]
        raise AssertionError("not a RESP reply: %r" % (line[:200],))

    def read_bulk_raw(self, timeout=None):
        """A replication payload: keepalive newlines, then "$<len>\r\n" and len bytes with no
        trailing CRLF (the RDB of a full sync). Returns the bytes."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while not self.buf:
                self._fill(deadline)
            if self.buf[:1] == b"\n":
                self.buf = self.buf[1:]
                continue
            break
        line = self._line(deadline)
        assert line[:1] == b"$", line[:100]
        n = int(line[1:])
        while len(self.buf) < n:
            self._fill(deadline)
        v, self.buf = self.buf[:n], self.buf[n:]
        return v

    def reply(self, timeout=None):
        return self._value(time.monotonic() + (timeout or self.timeout))

    def wait_closed(self, timeout, what="the relay to close the connection"):
        """Seconds until the relay closed this connection (data before that is kept)."""
        if self.eof:
            return 0.0
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            try:
                self._fill(deadline)
            except ConnectionError:
                return time.monotonic() - t0
            except h.WaitTimeout:
                raise h.WaitTimeout("timed out after %.1fs waiting for %s" % (timeout, what)) \
                    from None

    def is_open(self):
        """True unless the relay closed the connection (non-blocking check)."""
        if self.eof:
            return False
        self.sock.setblocking(False)
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            return False
        finally:
            self.sock.setblocking(True)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def close(self):
        self.sock.close()

    def abort(self):
        abort_close(self.sock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# replication checks


EMPTY_DIGEST = "0" * 40


def converge(master, leaves, relays=(), timeout=h.SYNC_TIMEOUT_S):
    """Digests of the leaves equal the master's, offsets of leaves and relays equal the master's.
    Returns the digest (never the empty one)."""
    d = h.wait_digests_equal(master, list(leaves), relays=list(relays), timeout=timeout)
    assert d != EMPTY_DIGEST, "dataset unexpectedly empty"
    return d


def fill(c, n=500, prefix="k", seed=0):
    """Pipelined mixed writes through redis-py client c (any transport). Long TTLs only, so the
    dataset is fixed once written."""
    p = c.pipeline(transaction=False)
    for i in range(n):
        k = "%s:%d:%d" % (prefix, seed, i)
        kind = i % 6
        if kind == 0:
            p.set("s:" + k, "v%d" % i)
        elif kind == 1:
            p.hset("h:" + k, mapping={"a": i, "b": "x" * (i % 50)})
        elif kind == 2:
            p.rpush("l:" + k, *range(i % 10 + 1))
        elif kind == 3:
            p.sadd("S:" + k, *["m%d" % j for j in range(i % 7 + 1)])
        elif kind == 4:
            p.zadd("z:" + k, {"m%d" % j: j * 1.5 for j in range(i % 5 + 1)})
        else:
            p.set("t:" + k, i, ex=3600)
        if i % 200 == 199:
            p.execute()
    p.set("big:%s:%d" % (prefix, seed), "B" * 100_000)
    p.execute()


def stat(node, field, section="stats"):
    return int(node.info(section)[field])


def assert_alive(*nodes):
    for n in nodes:
        assert n.alive(), "%s died:\n%s" % (n.name, n.describe())
