"""Hostile senders on the generic JSON source (issue: security, findings 5
and 9).

Strangers who can reach the TCP listener but do not know the secret open
hundreds of idle connections, stream megabytes without a newline, or
stream event lines without authenticating: the real sender still gets in
and its events reach an XMPP subscriber, every stranger is closed within
[json] auth_timeout, and the daemon's memory stays bounded. Counts beyond
2^63-1, negative or fractional are malformed events, refused and counted,
while the good events around them are delivered. Real Prosody and Cyrus."""
import json
import re
import signal
import socket
import threading
import time

import pytest

from harness import free_port
from stack import Stack, child_text, mailbox_of, wait_event
from test_sources import (SECRET, JsonSender, event, json_port,
                          message_new_payloads, running_json_stack, subscribe)

AUTH_TIMEOUT = 2          # seconds ([json] auth_timeout)
IDLE = 300                # more than the default max_connections (256)
FLOODERS = 6              # each streams 8 MiB without a newline
UNAUTHENTICATED = 6       # each streams event lines without the secret
RSS_GROWTH_MAX = 24 << 20


@pytest.fixture
def lstack(workdir):
    yield from running_json_stack(workdir, auth_timeout=str(AUTH_TIMEOUT))


def rss(pid):
    with open('/proc/%d/status' % pid) as f:
        return int(re.search(r'VmRSS:\s+(\d+) kB', f.read()).group(1)) * 1024


def stream(port, chunk, total):
    """Sends total bytes of chunk over a new connection, as long as the
    daemon reads; returns the bytes it took."""
    sent = 0
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
            while sent < total:
                s.sendall(chunk)
                sent += len(chunk)
    except OSError:
        pass        # closed by the daemon: what we want
    return sent


def closed_within(sock, deadline):
    """Whether the daemon closes sock (EOF or reset) before deadline;
    anything it writes first (an error line) is read and dropped."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b'':
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def stats(stack):
    stack.daemon.kill(signal.SIGUSR1)
    line = stack.daemon.wait_log(r'stats: .*').group(0)
    return {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', line)}


def test_strangers_cannot_hold_the_listener(lstack):
    port = json_port(lstack)
    alice = lstack.client('alice')
    subscribe(alice, 'INBOX')
    base = rss(lstack.daemon.pid)
    lines_before = stats(lstack)['json_lines']

    idle = [socket.create_connection(('127.0.0.1', port)) for _ in range(IDLE)]
    opened = time.monotonic()
    lines = b''.join(json.dumps(event('MessageNew', uid=9000 + i)).encode() + b'\n'
                     for i in range(200))
    jobs = [threading.Thread(target=stream, args=(port, b'{' * 65536, 8 << 20))
            for _ in range(FLOODERS)]
    jobs += [threading.Thread(target=stream, args=(port, lines, 8 << 20))
             for _ in range(UNAUTHENTICATED)]
    for j in jobs:
        j.start()

    # the real sender, while all of that is on the listener
    s = JsonSender(port=port)
    assert s.send({'auth': SECRET}) == {'ok': True}
    ack = s.send(event('MessageNew', uid=1, messages=1))
    assert ack['ok'] is True, ack
    _, payload = wait_event(alice, 'MessageNew', 'INBOX')
    assert mailbox_of(payload).get('uid') == '1'
    for j in jobs:
        j.join(30)
        assert not j.is_alive()

    # every stranger is gone by the deadline (most were made room for)
    deadline = opened + AUTH_TIMEOUT + 5
    still_open = [c for c in idle if not closed_within(c, deadline)]
    for c in idle:
        c.close()
    assert still_open == []
    grown = rss(lstack.daemon.pid) - base
    assert grown < RSS_GROWTH_MAX, 'RSS grew by %d MiB' % (grown >> 20)

    # the authenticated sender was never touched, and nothing a stranger
    # sent was journaled
    ack = s.send(event('MessageNew', uid=2, messages=2))
    assert ack['ok'] is True, ack
    _, payload = wait_event(alice, 'MessageNew', 'INBOX')
    assert mailbox_of(payload).get('uid') == '2'
    s.close()
    log = lstack.daemon.log()
    assert 'no authentication within [json] auth_timeout' in log
    assert 'to make room ([json] max_unauthenticated = 32)' in log
    assert 'authentication line longer than 1024 bytes' in log
    st = stats(lstack)
    assert st['json_lines'] - lines_before == 2, st
    assert st['json_auth_evicted'] >= IDLE - 32, st
    assert st['json_auth_timeouts'] >= 1, st
    assert st['json_auth_failures'] >= FLOODERS + UNAUTHENTICATED, st


def test_many_senders_and_a_stranger_pool_kept_apart(workdir):
    """A full pool of authenticated senders refuses one more; strangers
    filling the unauthenticated pool do not take a sender's place, and a
    sender still authenticates while they hold it."""
    s = Stack(workdir, config={'json': {
        'listen': '127.0.0.1:%d' % free_port(), 'secret': SECRET,
        'max_connections': '2', 'max_unauthenticated': '4',
        'auth_timeout': '30'}})
    try:
        s.start()
        port = json_port(s)
        idle = [socket.create_connection(('127.0.0.1', port)) for _ in range(4)]
        senders = []
        for _ in range(2):
            senders.append(JsonSender(port=port))
            assert senders[-1].send({'auth': SECRET}) == {'ok': True}
        third = JsonSender(port=port)
        reply = third.send({'auth': SECRET})
        assert reply['ok'] is False and 'max_connections' in reply['error']
        third.close()
        for snd in senders:
            assert snd.send(event('MailboxCreate', mailbox='Box'))['ok'] is True
        # the oldest stranger made room for the first sender; the others
        # left the pool by authenticating
        closed = [c for c in idle if closed_within(c, time.monotonic() + 1)]
        assert closed == idle[:1]
        for c in idle:
            c.close()
        for snd in senders:
            snd.close()
    finally:
        s.stop()


def test_counts_beyond_int64_are_malformed(lstack):
    """vnd.cmu.unseenMessages of 99999999999999999999 was published as
    <unseen>-1</unseen>; now a count beyond 2^63-1, negative or not an
    integer makes the event malformed: refused, logged, counted, and the
    good events around it delivered with their true counts."""
    alice = lstack.client('alice')
    subscribe(alice, 'INBOX')
    before = stats(lstack)['malformed']
    bad = [{'vnd.cmu.unseenMessages': '99999999999999999999'},
           {'vnd.cmu.unseenMessages': '9223372036854775808'},
           {'vnd.cmu.unseenMessages': -1},
           {'vnd.cmu.unseenMessages': 2.5},
           {'messages': '18446744073709551615'},
           {'uidnext': 1.0},
           {'modseq': -5}]
    s = JsonSender(lstack.json_socket)
    uids = []
    for i, params in enumerate(bad):
        ack = s.send(event('MessageNew', uid=100 + i, messages=1,
                           **{'vnd.cmu.unseenMessages': i}))
        assert ack['ok'] is True, ack
        uids.append(100 + i)
        fields = dict({'messages': 1}, **params)
        ack = s.send(event('MessageNew', uid=200 + i, **fields))
        assert ack['ok'] is False and 'wrong type' in ack['error'], (params, ack)
    ack = s.send(event('MessageNew', uid=300, messages=1,
                       **{'vnd.cmu.unseenMessages': '9223372036854775807'}))
    assert ack['ok'] is True, ack
    uids.append(300)
    s.close()
    seen = {int(mailbox_of(p).get('uid')): child_text(p, 'unseen')
            for p in message_new_payloads(alice, len(uids))}
    assert sorted(seen) == uids
    assert seen[300] == '9223372036854775807'
    assert [seen[u] for u in uids[:-1]] == [str(i) for i in range(len(bad))]
    assert stats(lstack)['malformed'] - before == len(bad)
    assert len(re.findall(r'rejected line .*wrong type', lstack.daemon.log())) >= len(bad)
