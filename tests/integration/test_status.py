"""Seeing what the daemon does (issue 18): `mailpubsubctl status` over the
control socket shows the numbers this test produced (events delivered
over LMTP, a malformed datagram, subscriptions made); a user who is not
root, the daemon's user or in [control] group is refused, also when the
socket's mode lets them connect; a group member sees the number of active
taps but not who is tapped; `accounts`, `nodes` and `subscriptions` list
what the store holds while the daemon runs."""
import json
import os
import socket
import sqlite3
import subprocess
import time

import pytest

from harness import make_message, wait_until
from stack import (TOP, Stack, iq_type, items_iq, service_jid,
                   subscribe_iq, wait_event)

DELIVERED = 3


def ctl_path():
    return os.environ.get('MAILPUBSUBCTL', os.path.join(TOP, 'build', 'mailpubsubctl'))


def ctl(stack, *args, user=None, groups=None):
    """Runs mailpubsubctl; as another user through setpriv when user is
    given (a fresh process: its credentials are what the daemon sees)."""
    argv = [ctl_path(), '-c', stack.conf] + list(args)
    if user is not None:
        argv = ['setpriv', '--reuid=' + user, '--regid=nogroup',
                '--groups=' + groups if groups else '--clear-groups'] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def status(stack, **kw):
    proc = ctl(stack, 'status', '--json', **kw)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def store_counts(stack):
    """What the journal holds, read independently of the daemon."""
    db = sqlite3.connect('file:%s?mode=ro' % stack.db, uri=True, timeout=10)
    try:
        head = db.execute('SELECT coalesce(max(seq), 0) FROM journal').fetchone()[0]
        cyrus = db.execute("SELECT count(*) FROM journal WHERE source = 'cyrus'").fetchone()[0]
        new = db.execute("SELECT count(*) FROM journal WHERE type = 'MessageNew'"
                         " AND account = 'alice' AND node = 'INBOX'").fetchone()[0]
        return head, cyrus, new
    finally:
        db.close()


@pytest.fixture
def stack(workdir):
    s = Stack(workdir, users=('alice', 'bob'),
              config={'control': {'socket': os.path.join(workdir, 'control.sock'),
                                  'group': 'mail'}})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def subscribe(client, account, node='INBOX'):
    bare = client.jid.split('/')[0]
    wait_until(lambda: iq_type(client.iq(items_iq(service_jid(account), node))) == 'result',
               10, what='node %s/%s' % (account, node))
    reply = client.iq(subscribe_iq(service_jid(account), node, bare))
    assert iq_type(reply) == 'result'


def send_garbage(stack):
    """One datagram that is not Cyrus's wire format."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(b'not a notification', stack.notify_socket)
    finally:
        s.close()


def produce(stack):
    """Subscriptions by alice and bob, DELIVERED messages to alice, one
    malformed datagram; returns alice's client once every notification
    arrived."""
    stack.cyrus.deliver('alice', make_message(subject='first'))
    stack.cyrus.deliver('bob', make_message(subject='first'))
    alice = stack.client('alice')
    bob = stack.client('bob')
    subscribe(alice, 'alice')
    subscribe(bob, 'bob')
    for i in range(DELIVERED):
        stack.cyrus.deliver('alice', make_message(subject='m%d' % i))
    for i in range(DELIVERED):
        wait_event(alice, 'MessageNew', 'INBOX')
    send_garbage(stack)
    stack.daemon.wait_log(r'rejected datagram', timeout=10)
    return alice


def test_status_shows_what_happened(stack):
    produce(stack)
    # the publisher's watermark is written once libstrophe let go of it
    st = wait_until(lambda: (lambda s: s if s['journal']['consumers'][0]['backlog'] == 0
                             else None)(status(stack)), 10, what='no backlog')
    head, cyrus, new = store_counts(stack)
    assert new == DELIVERED + 1
    assert st['component']['connected'] is True
    assert st['component']['connections'] == 1
    assert st['uptime_seconds'] >= 0 and st['pid'] == stack.daemon.pid
    src = {s['name']: s for s in st['sources']}
    assert src['cyrus']['state'] == 'listening'
    assert src['cyrus']['address'] == stack.notify_socket
    assert src['cyrus']['journaled'] == cyrus
    assert src['cyrus']['malformed'] == 1
    assert src['cyrus']['received'] == cyrus + 1
    assert src['json']['state'] == 'off' and src['imap']['state'] == 'off'
    assert st['journal']['head'] == head
    consumers = {c['name']: c for c in st['journal']['consumers']}
    assert consumers['publisher'] == {'name': 'publisher', 'sequence': head, 'backlog': 0}
    assert consumers['firehose']['sequence'] == head
    assert st['subscriptions'] == 2
    # every MessageNew after alice subscribed reached her, and bob's own
    assert st['notifications_sent'] >= DELIVERED
    assert st['imap']['sessions'] >= 1
    assert st['imap']['authz']['granted'] >= 2
    cache = st['imap']['acl_cache']
    assert cache['hits'] + cache['misses'] >= 1
    assert st['taps'] == {'active': 0, 'list': []}

    # the human form says the same
    proc = ctl(stack, 'status')
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert 'events.localhost connected since' in text, text
    assert 'cyrus  listening (%s): %d received, %d journaled, 1 malformed' % (
        stack.notify_socket, cyrus + 1, cyrus) in text, text
    assert '  publisher  at %d, backlog 0' % head in text, text
    assert 'Subscriptions: 2\n' in text, text
    assert 'Taps active:  0\n' in text, text
    print('\n' + text)   # for the report: pytest -s shows it


def test_status_counts_rate_of_a_source(stack):
    """The rate is over the last minute, from samples every 5 s."""
    alice = stack.client('alice')
    stack.cyrus.deliver('alice', make_message())
    subscribe(alice, 'alice')
    for i in range(5):
        stack.cyrus.deliver('alice', make_message(subject='r%d' % i))
    time.sleep(5.5)
    src = {s['name']: s for s in status(stack)['sources']}
    assert src['cyrus']['rate_per_second'] > 0


def test_other_users_are_refused(stack):
    sock = os.path.join(stack.workdir, 'control.sock')
    # with [control] group the socket is 0660, root:mail here
    st = os.stat(sock)
    assert st.st_mode & 0o777 == 0o660
    # nobody outside the group cannot even connect
    proc = ctl(stack, 'status', user='nobody')
    assert proc.returncode == 2
    assert 'Permission denied' in proc.stderr, proc.stderr
    # a loosened mode changes nothing: the daemon checks the credentials
    os.chmod(sock, 0o666)
    proc = ctl(stack, 'status', user='nobody')
    assert proc.returncode == 2
    assert 'the daemon refused: permission denied' in proc.stderr, proc.stderr
    stack.daemon.wait_log(r'control: refused uid %d' % pwd_uid('nobody'), timeout=5)
    # a hostile request gets an error, not a crash
    for bad in (b'{"command":"status","x":1}\n', b'[1]\n', b'x' * 5000):
        assert b'"ok":false' in raw_request(sock, bad)
    assert stack.daemon.running()


def pwd_uid(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


def raw_request(path, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(data)
        out = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def test_group_members_see_tap_count_only(stack):
    until = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() + 600))
    proc = ctl(stack, 'tap', 'add', '--target', 'alice', '--authority', 'bob@localhost',
               '--to', until, '--reference', 'W-18')
    assert proc.returncode == 0, proc.stderr
    member = status(stack, user='nobody', groups='mail')
    assert member['taps'] == {'active': 1}
    root = status(stack)
    assert root['taps']['active'] == 1
    assert [(t['target'], t['reference']) for t in root['taps']['list']] == [('alice', 'W-18')]
    proc = ctl(stack, 'status', user='nobody', groups='mail')
    assert 'Taps active:  1\n' in proc.stdout and 'alice' not in proc.stdout


def test_store_queries(stack):
    produce(stack)
    stack.cyrus.imap('alice').create('INBOX/Projects')
    wait_until(lambda: 'INBOX/Projects' in ctl(stack, 'nodes', '--account', 'alice').stdout,
               10, what='node INBOX/Projects')

    accounts = json.loads(ctl(stack, 'accounts', '--json').stdout)
    by_name = {a['account']: a for a in accounts}
    assert by_name['alice']['nodes'] == 2 and by_name['alice']['subscriptions'] == 1
    assert by_name['bob']['nodes'] == 1 and by_name['bob']['subscriptions'] == 1

    nodes = json.loads(ctl(stack, 'nodes', '--account', 'alice', '--json').stdout)
    assert [n['node'] for n in nodes] == ['INBOX', 'INBOX/Projects']
    inbox = nodes[0]
    assert inbox['messages'] == DELIVERED + 1 and inbox['subscriptions'] == 1

    subs = json.loads(ctl(stack, 'subscriptions', '--jid', 'alice@localhost', '--json').stdout)
    assert [(s['account'], s['node'], s['depth']) for s in subs] == [('alice', 'INBOX', 'node')]
    assert subs[0]['jid'].startswith('alice@localhost')
    subs = json.loads(ctl(stack, 'subscriptions', '--account', 'bob', '--node', 'INBOX',
                          '--json').stdout)
    assert [s['jid'].split('/')[0] for s in subs] == ['bob@localhost']
    assert json.loads(ctl(stack, 'subscriptions', '--account', 'bob', '--node', 'Nope',
                          '--json').stdout) == []
    # the table form has a header and one line per row
    lines = ctl(stack, 'subscriptions', '--account', 'alice').stdout.splitlines()
    assert lines[0].split('\t')[:3] == ['jid', 'account', 'node'] and len(lines) == 2
    # usage errors
    assert ctl(stack, 'subscriptions').returncode == 2
    assert ctl(stack, 'nodes').returncode == 2


def test_status_counts_delegated_publishes(workdir):
    """With [delegate], one publish to the server's pubsub per event stands
    for every plain subscriber's notification: status counts those too."""
    from test_delegate import PUBSUB, delegated_stack, wait_new
    s = delegated_stack(workdir)
    s.extra_config['control'] = {'socket': os.path.join(workdir, 'control.sock')}
    try:
        s.start()
        s.daemon.wait_log(r'delegate: plain subscriptions are published through')
        s.cyrus.deliver('alice', make_message(subject='before'))
        alice = s.client('alice')
        subscribe(alice, 'alice')
        before = status(s)
        for i in range(2):
            s.cyrus.deliver('alice', make_message(subject='d%d' % i))
            wait_new(alice, PUBSUB)
        after = status(s)
        assert after['delegated_publishes'] - before['delegated_publishes'] == 2
        # Prosody sent those notifications, not us
        assert after['notifications_sent'] == before['notifications_sent']
        assert 'through [delegate]' in ctl(s, 'status').stdout
    finally:
        s.stop()


def test_status_of_json_and_imap_sources(workdir):
    """The generic source's open connections and the IMAP client source's
    watchers, each with what it journaled."""
    from test_imap_source import ImapSourceStack
    s = ImapSourceStack(workdir)
    s.extra_config['control'] = {'socket': os.path.join(workdir, 'control.sock')}
    s.extra_config['json'] = {'socket': os.path.join(workdir, 'json.sock')}
    try:
        s.start()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sender.connect(os.path.join(workdir, 'json.sock'))
        sender.sendall(b'{"event":"MessageNew","uri":"imap://h/user/carol;UIDVALIDITY=1/;UID=1"}\n'
                       b'not json\n')
        f = sender.makefile('rb')
        assert json.loads(f.readline())['ok'] is True
        assert json.loads(f.readline())['ok'] is False
        s.cyrus.deliver('alice', make_message(subject='watched'))
        wait_until(lambda: {x['name']: x for x in status(s)['sources']}['imap']['journaled'] >= 1,
                   15, what='the IMAP source to journal the delivery')
        src = {x['name']: x for x in status(s)['sources']}
        assert src['cyrus']['state'] == 'off'
        assert src['json']['state'] == 'listening' and src['json']['connections'] == 1
        assert (src['json']['received'], src['json']['journaled']) == (2, 1)
        assert src['json']['malformed'] == 1
        imap = src['imap']
        assert imap['state'] == 'watching' and imap['accounts'] == 'alice bob'
        assert imap['watchers'] == imap['connected'] == 2
        assert imap['malformed'] == 0
        text = ctl(s, 'status').stdout
        assert 'json   listening (%s, 1 connections)' % os.path.join(workdir, 'json.sock') in text
        assert 'imap   watching (alice bob: 2 of 2 watchers connected)' in text, text
        f.close()
        sender.close()
        wait_until(lambda: {x['name']: x for x in status(s)['sources']}['json']['connections']
                   == 0, 5, what='the sender to be gone')
    finally:
        s.stop()
