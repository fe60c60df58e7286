"""The front instance of several mail backends (issue 17 "In"), beyond
ACLs: the firehose and the interception taps on the front carry the bytes
of each message as the backend that holds the account has them
([backends], not [imap] host),
and the bus source's counters (received, journaled, duplicates skipped,
rejected, released, connection) show in `mailpubsubctl status` and on
the Prometheus endpoint; a front with [bus] consume and no address serves
XMPP and runs no producer."""
import base64
import hashlib
import json
import os
import subprocess

import pytest

from bus_stack import QUEUE, BusStack
from harness import free_port, make_message, wait_until
from stack import COMPONENT, event_items, iq_type
from rabbitmq import Consumer, USER as BUS_USER
from test_bus_in import deliver, from_account, node_known, publish, wait_all_through
from test_bus_in import subscribe as bus_subscribe
from test_bus_out import body_json, props
from test_firehose import NS_CONTENT, imap_bytes, next_item, subscribe
from test_intercept import add_tap, tap_item
from test_metrics import scrape, value
from test_status import ctl_path


@pytest.fixture
def front(workdir):
    port = free_port()
    s = BusStack(workdir, xmpp_users=('alice', 'bob', 'carol', 'dave', 'archiver',
                                      'boss', 'police'),
                 front_extra={
                     'taps': {'admins': 'boss@localhost'},
                     'firehose': {'subscribers': 'archiver@localhost:archive',
                                  'inline_max': '1000000', 'fetch_attempts': '3'},
                     'control': {'socket': os.path.join(workdir, 'control.sock'),
                                 'group': 'mail'},
                     'metrics': {'listen': '127.0.0.1:%d' % port}})
    s.metrics_port = port
    try:
        s.start()
        yield s
    finally:
        s.stop()


def content_of(payload):
    """The message bytes inline in a firehose item; fails with what the
    item says instead (content-error) when there are none."""
    c = payload.find('{%s}content' % NS_CONTENT)
    if c is None:
        err = payload.find('{%s}content-error' % NS_CONTENT)
        raise AssertionError('no content: content-error %s' %
                             (None if err is None else dict(err.attrib)))
    raw = base64.b64decode(c.text)
    assert c.get('sha256') == hashlib.sha256(raw).hexdigest()
    assert int(c.get('size')) == len(raw) and c.get('part') == 'full'
    return raw


def test_firehose_content_from_the_accounts_backend(front):
    """A message delivered on b2 reaches the front's archive subscriber
    with the bytes b2's IMAP has for it (b1, the [imap] host, has no
    user/bob); one delivered on b1 with b1's."""
    b1, b2 = front.backends
    arch = front.client('archiver')
    assert iq_type(subscribe(arch)) == 'result'
    front.backends[1].cyrus.deliver('bob', make_message(subject='on b2',
                                                        body='b2 body\r\n' * 40))
    _, payload = next_item(arch, 'MessageNew', timeout=60)
    assert payload.find('{urn:mailpubsub:event:0}mailbox').get('account') == 'bob'
    assert content_of(payload) == imap_bytes(b2, 'bob', 1)[0]

    b1.cyrus.deliver('alice', make_message(subject='on b1', body='b1 body\r\n' * 40))
    _, payload = next_item(arch, 'MessageNew', timeout=60)
    assert payload.find('{urn:mailpubsub:event:0}mailbox').get('account') == 'alice'
    assert content_of(payload) == imap_bytes(b1, 'alice', 1)[0]


@pytest.fixture
def front_with_bus_content(workdir):
    # a second [bus] section adds to the first (the front publishes to
    # /queue/front-all what it journals)
    s = BusStack(workdir, xmpp_users=('alice', 'bob'),
                 front_extra={'bus': {'content': 'full'}})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_bus_content_from_the_accounts_backend(front_with_bus_content):
    """The front's own bus producer ([bus] address, content = full) puts on
    the bus the bytes of a b2 message as b2's IMAP has them, and of a b1
    message as b1's: not what [imap] host (b1) says of a b2 account."""
    front = front_with_bus_content
    b1, b2 = front.backends
    consumer = Consumer(front.broker.url, '/queue/front-all', user=BUS_USER,
                        password=front.broker.password)
    try:
        b2.cyrus.deliver('bob', make_message(subject='on b2', body='b2 bus\r\n' * 40))
        b1.cyrus.deliver('alice', make_message(subject='on b1', body='b1 bus\r\n' * 40))

        def news():
            return [body_json(m) for m in consumer.snapshot()
                    if props(m).get('event') == 'MessageNew']
        wait_until(lambda: {b['account'] for b in news()} >= {'alice', 'bob'},
                   timeout=90, what='MessageNew of alice and bob on /queue/front-all')
        by_account = {b['account']: b for b in news()}
        for account, backend in (('bob', b2), ('alice', b1)):
            c = by_account[account].get('content')
            assert c is not None and c.get('error') is None, by_account[account]
            assert c['part'] == 'full'
            assert base64.b64decode(c['data']) == imap_bytes(backend, account, 1)[0]
    finally:
        consumer.close()


def test_tap_content_from_the_accounts_backend(front):
    """A tap on an account of b2 relays the message with b2's bytes."""
    b2 = front.backends[1]
    boss, police = front.client('boss'), front.client('police')
    tap = add_tap(boss, 'bob', 'police@localhost')
    b2.cyrus.deliver('bob', make_message(subject='tapped on b2', body='tap\r\n' * 40))
    # the event at once, then again with the content (or why there is none)
    tap_item(police, tap, 'MessageNew', timeout=60, content=False)
    _, payload = tap_item(police, tap, 'MessageNew', timeout=30)
    assert content_of(payload) == imap_bytes(b2, 'bob', 1)[0]


def status(front):
    proc = subprocess.run([ctl_path(), '-c', front.front_conf, 'status', '--json'],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def bus_source(front):
    return {s['name']: s for s in status(front)['sources']}['bus']


def bus_metrics(front):
    text = scrape(front.metrics_port)[2]
    out = {o: value(text, 'mailpubsub_bus_in_messages_total', outcome=o)
           for o in ('journaled', 'duplicate', 'rejected', 'released')}
    out['received'] = value(text, 'mailpubsub_events_received_total', source='bus')
    out['connected'] = value(text, 'mailpubsub_bus_in_connected')
    return out


def bus_journal(front):
    return front.front_journal("SELECT count(*) FROM journal WHERE source = 'bus'")


def settled(front):
    """The bus source's status and metrics once nothing moves: the same
    status before and after the scrape, and its journaled count what the
    journal holds (read independently of the daemon). The front's own
    IMAP logins on the backends (counts, ACLs) make Login events that come
    back over the bus, so the test cannot know the total in advance; the
    journal tells."""
    def counters():
        s = bus_source(front)
        s.pop('rate_per_second')   # moves with the clock
        return s

    def look():
        a = counters()
        m = bus_metrics(front)
        b = counters()
        if a != b or a['journaled'] != bus_journal(front):
            return None
        return a, m
    return wait_until(look, 30, interval=0.5, what='the bus source to settle')


def test_bus_counters_in_status_and_metrics(front):
    """After the backends' events and then messages of our own (N new, one
    duplicate message-id, one body that is no event), status and metrics
    show exactly what the front did with them."""
    b1 = front.backends[0]
    b1.cyrus.deliver('alice', make_message(subject='counted'))
    wait_all_through(front)
    before, _ = settled(front)
    assert before['state'] == 'connected' and before['connections'] == 1
    assert before['disconnects'] == before['failures'] == 0
    assert before['address'] == '/queue/mailpubsub-front'
    # every message the front took so far was a backend event, journaled
    assert before['journaled'] == before['received'] > 0
    assert before['duplicates'] == before['rejected'] == before['released'] == 0
    assert before['malformed'] == before['dropped'] == 0

    body = json.dumps({'event': 'MessageNew', 'uri': 'imap://b1/user/alice;'
                       'UIDVALIDITY=1/;UID=9', 'seq': 1, 'instance': 'test'})
    n = 3
    for i in range(n):
        publish(front, 'test:%d' % i, body, {'instance': 'test'})
    publish(front, 'test:0', body, {'instance': 'test'})   # a duplicate
    publish(front, 'test:junk', 'not json', {'instance': 'test'})
    front.front.wait_log(r"bus in: message 'test:junk' rejected", timeout=30)
    wait_until(lambda: front.front_journal("SELECT count(*) FROM journal_origin "
                                           "WHERE origin_id LIKE 'test:%'") == n, 30,
               what='our %d messages journaled' % n)
    after, m = settled(front)
    # journaled: what the journal holds from the bus (ours and the Login
    # events the front's IMAP sessions caused meanwhile); received: those
    # and the duplicate and the junk, nothing else
    journaled = bus_journal(front)
    assert journaled >= before['journaled'] + n
    want = {'received': journaled + 2, 'journaled': journaled, 'duplicates': 1,
            'rejected': 1, 'malformed': 1, 'released': 0, 'dropped': 0}
    assert {k: after[k] for k in want} == want
    assert after['state'] == 'connected' and after['commits'] >= 1
    assert m == {'journaled': journaled, 'duplicate': 1, 'rejected': 1,
                 'released': 0, 'received': journaled + 2, 'connected': 1}
    text = scrape(front.metrics_port)[2]
    lint = subprocess.run(['promtool', 'check', 'metrics'], input=text,
                          capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert value(text, 'mailpubsub_events_journaled_total', source='bus') == journaled
    assert value(text, 'mailpubsub_bus_in_commits_total') == after['commits']
    assert value(text, 'mailpubsub_bus_in_connections_total') == 1

    # the text form says it too
    proc = subprocess.run([ctl_path(), '-c', front.front_conf, 'status'],
                          capture_output=True, text=True, timeout=30)
    line = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith('bus ')]
    assert line and '%d received, %d journaled' % (journaled + 2, journaled) \
        in line[0], proc.stdout
    assert '1 duplicates skipped, 1 rejected, 0 released' in proc.stdout, proc.stdout
    print('\n' + '\n'.join(ln for ln in proc.stdout.splitlines()
                           if ln.startswith('  bus ') or ln.startswith('         ')))

    # broker gone: the state says so, the counters stay
    front.broker.stop()
    gone = wait_until(lambda: (lambda s: s if s['state'] == 'connecting' else None)(
        bus_source(front)), 30, what='the front to see the broker gone')
    assert gone['disconnects'] == 1 and gone['last_error']
    assert gone['journaled'] == journaled and gone['duplicates'] == 1
    assert bus_metrics(front)['connected'] == 0


@pytest.fixture
def consume_only(workdir):
    """A front with [bus] consume and no address: it serves XMPP and puts
    nothing of its own on the bus."""
    s = BusStack(workdir, xmpp_users=('alice', 'bob'), front_address=None,
                 front_extra={'control': {'socket': os.path.join(workdir, 'control.sock'),
                                          'group': 'mail'}})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_front_that_only_consumes(consume_only):
    """[bus] consume without [bus] address: deliveries on either backend
    reach the front's XMPP subscribers through Prosody; the front runs no
    producer: it says so at start, its status lists no bus consumer of its
    journal, its store has no bus watermark and the broker has no queue
    but the one the backends feed (before, such a front declared
    /queue/mailpubsub and sent its journal there)."""
    front = consume_only
    b1, b2 = front.backends
    alice, bob = front.client('alice'), front.client('bob')
    deliver(b1, 'alice', 'first for alice')
    deliver(b2, 'bob', 'first for bob')
    node_known(front, alice, 'alice')
    node_known(front, bob, 'bob')
    assert bus_subscribe(alice, 'alice') == 'subscribed'
    assert bus_subscribe(bob, 'bob') == 'subscribed'
    deliver(b1, 'alice', 'second for alice')
    deliver(b2, 'bob', 'second for bob')
    for who, account in ((alice, 'alice'), (bob, 'bob')):
        msg = who.wait_message(from_account(account), timeout=30)
        payload = event_items(msg)[1][0][1]
        assert payload.find('{urn:mailpubsub:event:0}mailbox').get('account') == account
    wait_all_through(front)

    log = front.front.log()
    assert 'bus: consuming only (no [bus] address): no producer' in log
    assert 'bus in: consuming %s' % QUEUE in log
    assert 'bus: sending to' not in log
    st = status(front)
    source = {s['name']: s for s in st['sources']}['bus']
    assert source['state'] == 'connected' and source['address'] == QUEUE
    assert source['journaled'] > 0
    # nothing waits on a bus watermark: the journal's consumers are the
    # publisher and the firehose, and the store has no bus_seq
    assert [c['name'] for c in st['journal']['consumers']] == ['publisher', 'firehose']
    assert front.front_journal("SELECT count(*) FROM meta WHERE key = 'bus_seq'") == 0
    # the broker: the backends' queue, drained by the front, and no other
    wait_until(lambda: front.broker.queues() == {QUEUE.split('/')[-1]: 0}, 30,
               what='only %s on the broker, drained' % QUEUE)
