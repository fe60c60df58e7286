"""src/xmpp/component.c against a private Prosody, through tests/component_smoke.c.

The smoke binary is built by hand (see the top of tests/component_smoke.c);
its path comes from $COMPONENT_SMOKE (default /tmp/component_smoke).
Run with Debian's Python:  /usr/bin/python3 -m pytest -v tests/integration/test_component.py

Set COMPONENT_SMOKE_VALGRIND=0 to skip the valgrind run, and e.g.
COMPONENT_SMOKE_WRAPPER="valgrind --error-exitcode=99" to wrap every run.
"""

import os
import re
import shlex
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, Prosody, XmppClient  # noqa: E402

SMOKE = os.environ.get('COMPONENT_SMOKE', '/tmp/component_smoke')
DOMAIN = 'events.localhost'
SECRET = 's3cret'
NS = '{jabber:client}'


class SamePortProsody(Prosody):
    """Prosody whose start() reuses the ports of the previous start."""

    def start(self, timeout=15.0):
        if self._c2s_port is None:
            return super().start(timeout)
        ports = iter((self._c2s_port, self._component_port))
        saved = harness.free_port
        harness.free_port = lambda: next(ports)
        try:
            return super().start(timeout)
        finally:
            harness.free_port = saved


def body_of(msg):
    b = msg.find(NS + 'body')
    return b.text if b is not None else None


def start_smoke(workdir, prosody, secret=SECRET, wrapper=None, name='smoke',
                env=None):
    if wrapper is None:
        wrapper = shlex.split(os.environ.get('COMPONENT_SMOKE_WRAPPER', ''))
    argv = list(wrapper) + [SMOKE, '127.0.0.1', str(prosody.component_port),
                            DOMAIN, secret]
    return Daemon(str(workdir), argv, name=name, env=env).start()


def connect_client(prosody):
    return XmppClient(plugins=('xep_0030',)).connect(
        'alice@localhost', 'pw', port=prosody.c2s_port)


def echo_roundtrip(client, text, timeout=10.0):
    client.send_message('echo@' + DOMAIN, text)
    m = client.wait_message(lambda m: body_of(m) == text, timeout=timeout)
    assert m.get('from') == 'echo@' + DOMAIN
    return m


def ping(client, to):
    return client.iq("<iq type='get' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                     % to)


@pytest.fixture
def prosody(tmp_path):
    # built by make check-integration: missing is a failure, never a skip
    assert os.access(SMOKE, os.X_OK), 'smoke binary %s not built' % SMOKE
    p = SamePortProsody(str(tmp_path), component_domain=DOMAIN, secret=SECRET,
                        log_level='info').start()
    p.register('alice', 'pw')
    yield p
    p.stop()


def stop_smoke(smoke):
    status = smoke.stop()
    assert status == 0, 'smoke exited with %s:\n%s' % (status, smoke.log()[-3000:])


def echo_ping_restart(tmp_path, prosody, wrapper=None, slow=1.0):
    smoke = start_smoke(tmp_path, prosody, wrapper=wrapper)
    client = None
    try:
        smoke.wait_log(r'smoke: state connected', timeout=10 * slow)
        client = connect_client(prosody)

        # (1) echo
        echo_roundtrip(client, 'hello-1')

        # (2) XEP-0199 pings the component answers itself
        for to in (DOMAIN, 'someone@' + DOMAIN, 'someone@%s/res' % DOMAIN):
            reply = ping(client, to)
            assert reply.get('type') == 'result', to
            assert reply.get('from') == to

        # (3) Prosody goes away and comes back on the same ports
        client.disconnect()
        client = None
        prosody.stop()
        smoke.wait_log(r'smoke: state disconnected', timeout=5 * slow)
        time.sleep(0.5)
        t0 = time.monotonic()
        prosody.start()
        smoke.wait_log(r'smoke: state connected', timeout=10 * slow)
        reconnect_s = time.monotonic() - t0
        print('\nreconnected %.2fs after prosody was back' % reconnect_s)
        assert reconnect_s < 5 * slow
        client = connect_client(prosody)
        echo_roundtrip(client, 'hello-after-restart')
        assert ping(client, DOMAIN).get('type') == 'result'
        assert 'keepalive' not in smoke.log()
    finally:
        if client is not None:
            client.disconnect()
        if smoke.running():
            stop_smoke(smoke)
    return smoke


def test_echo_ping_reconnect(tmp_path, prosody):
    smoke = echo_ping_restart(tmp_path, prosody)
    log = smoke.log()
    assert 'smoke: component closed' in log
    assert SECRET not in log


def test_burst_2000(tmp_path, prosody):
    n = 2000
    smoke = start_smoke(tmp_path, prosody)
    client = None
    try:
        smoke.wait_log(r'smoke: state connected', timeout=10)
        client = connect_client(prosody)
        echo_roundtrip(client, 'warmup')
        t0 = time.monotonic()
        for i in range(n):
            client.send_message('echo@' + DOMAIN, 'burst-%d' % i)
        seen = set()
        deadline = t0 + 60
        while len(seen) < n and time.monotonic() < deadline:
            try:
                m = client.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                continue
            b = body_of(m)
            if b and b.startswith('burst-'):
                seen.add(b)
        elapsed = time.monotonic() - t0
        print('\n%d/%d echoes in %.2fs (%.0f/s)' % (len(seen), n, elapsed,
                                                   len(seen) / elapsed))
        assert len(seen) == n
        # A ~40 ms Nagle/delayed-ACK stall per stanza would take 80 s.
        assert elapsed < 20
    finally:
        if client is not None:
            client.disconnect()
        stop_smoke(smoke)


def test_flood_large_writes(tmp_path, prosody):
    """4 MB queued from inside one handler: partial writes must be flushed
    by the writable watcher, not by the backstop timer."""
    smoke = start_smoke(tmp_path, prosody)
    client = None
    try:
        smoke.wait_log(r'smoke: state connected', timeout=10)
        client = connect_client(prosody)
        for n, size in ((200, 20000), (5000, 100)):
            t0 = time.monotonic()
            client.send_message('echo@' + DOMAIN, 'flood %d %d' % (n, size))
            for _ in range(n):
                m = client.messages.get(timeout=30)
                assert len(body_of(m)) == size
            print('\nflood %d x %d bytes back in %.2fs'
                  % (n, size, time.monotonic() - t0))
    finally:
        if client is not None:
            client.disconnect()
        stop_smoke(smoke)


def test_close_from_stanza_callback(tmp_path, prosody):
    smoke = start_smoke(tmp_path, prosody)
    client = None
    try:
        smoke.wait_log(r'smoke: state connected', timeout=10)
        client = connect_client(prosody)
        echo_roundtrip(client, 'before-quit')
        client.send_message('echo@' + DOMAIN, 'quit')
        assert smoke.wait(timeout=10) == 0
        assert 'smoke: component closed' in smoke.log()
    finally:
        if client is not None:
            client.disconnect()
        smoke.stop()


def test_wrong_secret(tmp_path, prosody):
    bad = 'definitely-wrong-secret'
    smoke = start_smoke(tmp_path, prosody, secret=bad)
    try:
        for _ in range(3):
            smoke.wait_log(r'handshake rejected by 127\.0\.0\.1:\d+: '
                           r'not-authorized \(wrong component secret\?\)',
                           timeout=10)
        assert smoke.running()
        log = smoke.log()
        assert 'state connected' not in log
        assert bad not in log
        assert len(re.findall(r'reconnecting in \d+ ms', log)) >= 3
    finally:
        stop_smoke(smoke)
    lines = [l for l in smoke.log().splitlines()
             if 'rejected' in l or 'reconnecting' in l]
    print('\n' + '\n'.join(lines[:4]))


def test_ping_timeout_reconnects(tmp_path, prosody):
    """A server that stops answering (SIGSTOP) is noticed by our keepalive."""
    smoke = start_smoke(tmp_path, prosody, env={'SMOKE_PING_INTERVAL_MS': '300',
                                               'SMOKE_PING_TIMEOUT_MS': '700'})
    try:
        smoke.wait_log(r'smoke: state connected', timeout=10)
        os.kill(prosody.proc.pid, signal.SIGSTOP)
        try:
            smoke.wait_log(r'no reply to keepalive ping within 700 ms', timeout=5)
            smoke.wait_log(r'smoke: state disconnected', timeout=2)
        finally:
            os.kill(prosody.proc.pid, signal.SIGCONT)
        smoke.wait_log(r'smoke: state connected', timeout=10)
        client = connect_client(prosody)
        try:
            echo_roundtrip(client, 'after-stall')
        finally:
            client.disconnect()
    finally:
        stop_smoke(smoke)


def test_valgrind_clean(tmp_path, prosody):
    vlog = os.path.join(str(tmp_path), 'valgrind.log')
    wrapper = ['valgrind', '--leak-check=full', '--show-leak-kinds=definite,indirect',
               '--errors-for-leak-kinds=definite,indirect', '--error-exitcode=99',
               '--log-file=' + vlog]
    echo_ping_restart(tmp_path, prosody, wrapper=wrapper, slow=3.0)
    with open(vlog) as f:
        report = f.read()
    summary = [l.split('== ', 1)[-1] for l in report.splitlines()
               if re.search(r'(definitely|indirectly|possibly) lost|still reachable'
                            r'|in use at exit|heap blocks|ERROR SUMMARY', l)]
    print('\n' + '\n'.join(summary))
    assert re.search(r'ERROR SUMMARY: 0 errors', report), report[-4000:]
