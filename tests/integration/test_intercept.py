"""Live interception taps (issue: e-Discovery changelog and live
interception taps): while a tap is active every event of its target and
the full content of new messages go to the authority at once, also events
the target's own subscription filters out; the target's own client sees
exactly what it saw without the tap; an expired tap relays nothing; only
[taps] admins see and run the XEP-0050 commands; every change and relay is
in the changelog."""
import base64
import json
import os
import statistics
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from harness import make_message, wait_until
from stack import (COMPONENT, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_ITEM, NS_PUBSUB, TOP,
                   Stack, disco_iq, error_of, event_items, iq_type, is_event,
                   subscribe_iq, validate_payload)

NS_COMMANDS = 'http://jabber.org/protocol/commands'
NS_DATA = 'jabber:x:data'
NS_CONTENT = 'urn:mailpubsub:content:0'
LATENCY_GOAL_MS = 100


def ctl(stack, *args):
    path = os.environ.get('MAILPUBSUBCTL', os.path.join(TOP, 'build', 'mailpubsubctl'))
    proc = subprocess.run([path, '-c', stack.conf] + list(args), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def changelog(stack):
    import sqlite3
    db = sqlite3.connect(stack.db, timeout=10)
    try:
        return [json.loads(r[0]) for r in db.execute('SELECT record FROM changelog ORDER BY id')]
    finally:
        db.close()


@pytest.fixture
def tstack(workdir):
    s = Stack(workdir, users=('alice', 'bob', 'boss', 'police'),
              config={'taps': {'admins': 'boss@localhost'}})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def command(client, node, fields=None, sessionid=None):
    sid = " sessionid='%s'" % sessionid if sessionid else ''
    form = ''
    if fields is not None:
        form = "<x xmlns='%s' type='submit'>%s</x>" % (NS_DATA, ''.join(
            "<field var='%s'>%s</field>" % (k, ''.join('<value>%s</value>' % x for x in
                                                        (v if isinstance(v, list) else [v])))
            for k, v in fields.items()))
    return client.iq("<iq type='set' to='%s'><command xmlns='%s' node='%s' action='execute'%s>"
                     "%s</command></iq>" % (COMPONENT, NS_COMMANDS, node, sid, form))


def add_tap(admin, target, authorities, seconds=120, reference='W-2026-17'):
    """Two steps, as a client UI does: execute, then submit the form."""
    first = command(admin, 'tap-add')
    assert iq_type(first) == 'result', ET.tostring(first, 'unicode')
    cmd = first.find('{%s}command' % NS_COMMANDS)
    assert cmd.get('status') == 'executing'
    fields = {f.get('var') for f in cmd.iter('{%s}field' % NS_DATA)}
    assert {'target', 'authorities', 'not_before', 'not_after', 'reference'} <= fields
    until = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() + seconds))
    done = command(admin, 'tap-add', {'target': target, 'authorities': authorities,
                                      'not_after': until, 'reference': reference},
                   cmd.get('sessionid'))
    assert iq_type(done) == 'result', ET.tostring(done, 'unicode')
    cmd = done.find('{%s}command' % NS_COMMANDS)
    assert cmd.get('status') == 'completed'
    return int(cmd.find('{%s}x/{%s}field/{%s}value' % (NS_DATA, NS_DATA, NS_DATA)).text)


def tap_item(client, tap_id, etype, timeout=10.0, content=None):
    """(receipt time, payload) of the next relay of etype on the tap's node;
    content True/False: with or without <content/>."""
    node = 'mailpubsub:tap:%d' % tap_id

    def match(m):
        got = event_items(m)
        if got is None or got[0] != node:
            return False
        for _, p in got[1]:
            if p is not None and p.get('type') == etype and (
                    content is None or (p.find('{%s}content' % NS_CONTENT) is not None) == content):
                return True
        return False
    msg = client.wait_message(match, timeout)
    now = time.monotonic()
    payload = event_items(msg)[1][0][1]
    validate_payload(payload)
    return now, payload


def skeleton(msg):
    """A notification with the values that differ from event to event
    (ids, uids, counts, times, Message-ID, subject) masked: what stays is
    every element and attribute, in order, and every other value."""
    varying = {'id', 'seq', 'uid', 'received', 'messages', 'uidnext', 'modseq',
               'unseen', 'timestamp', 'messageSize', 'vnd.cmu.envelope', 'vnd.cmu.midset',
               'vnd.cmu.sessionId', 'pid', 'prev', 'uri', 'vnd.cmu.unseenMessages'}
    el = ET.fromstring(ET.tostring(msg))
    for e in el.iter():
        local = e.tag.split('}')[-1]
        for k in list(e.attrib):
            if k in varying:
                e.set(k, '*')
        if local in varying or e.get('name') in varying:
            e.text = '*'
    return ET.tostring(el, 'unicode')


def alice_view(stack, alice):
    """What alice can ask about herself and the service."""
    out = []
    for stanza in (
            "<iq type='get' to='alice@%s'><pubsub xmlns='%s'><subscriptions/></pubsub></iq>"
            % (COMPONENT, NS_PUBSUB),
            "<iq type='get' to='alice@%s'><pubsub xmlns='%s'><items node='INBOX'/></pubsub></iq>"
            % (COMPONENT, NS_PUBSUB),
            disco_iq(COMPONENT, NS_DISCO_ITEMS), disco_iq(COMPONENT, NS_DISCO_INFO),
            disco_iq('alice@%s' % COMPONENT, NS_DISCO_ITEMS),
            disco_iq(COMPONENT, NS_DISCO_ITEMS, NS_COMMANDS)):
        reply = alice.iq(stanza)
        reply.attrib.pop('id', None)
        out.append(ET.tostring(reply, 'unicode'))
    return out


def test_tap_relays_events_and_content_unseen_by_the_target(tstack):
    alice = tstack.client('alice')
    police = tstack.client('police')
    boss = tstack.client('boss')
    # alice only wants MessageNew on her INBOX
    reply = alice.iq(subscribe_iq('alice@%s' % COMPONENT, 'INBOX', alice.jid.split('/')[0],
                                  {'mailpubsub#events': 'MessageNew'}))
    assert iq_type(reply) == 'result'

    # without a tap
    tstack.cyrus.deliver('alice', make_message(subject='before'))
    before = alice.wait_message(lambda m: is_event(m, 'MessageNew'), 10)
    before_view = alice_view(tstack, alice)

    tap = add_tap(boss, 'alice', 'police@localhost')
    # nothing alice can ask about shows the tap
    assert alice_view(tstack, alice) == before_view
    latencies, content_latencies, alice_latencies = [], [], []
    for i in range(8):
        raw = make_message(subject='during %d' % i, body='secret %d\r\n' % i)
        t0 = time.monotonic()
        tstack.cyrus.deliver('alice', raw)
        got, payload = tap_item(police, tap, 'MessageNew', content=False)
        latencies.append((got - t0) * 1000)
        mine = alice.wait_message(lambda m: is_event(m, 'MessageNew'), 10)
        alice_latencies.append((time.monotonic() - t0) * 1000)
        # the target's notification is what it was without the tap
        assert skeleton(mine) == skeleton(before)
        assert 'tap' not in ET.tostring(mine, 'unicode')
        got, payload = tap_item(police, tap, 'MessageNew', content=True)
        content_latencies.append((got - t0) * 1000)
        uid = int(payload.find('{%s}mailbox' % NS_ITEM).get('uid'))
        c = payload.find('{%s}content' % NS_CONTENT)
        assert c.get('part') == 'full'
        m = tstack.cyrus.imap('alice')
        m.select('INBOX', readonly=True)
        typ, data = m.uid('FETCH', str(uid), '(BODY.PEEK[])')
        m.logout()
        assert base64.b64decode(c.text) == data[0][1]
        assert b'secret %d' % i in base64.b64decode(c.text)
    print('\ntap relay latency, LMTP delivery -> authority (ms): event median %.1f max %.1f;'
          ' with content median %.1f max %.1f; target\'s own notification (read after the authority\'s) median %.1f'
          % (statistics.median(latencies), max(latencies), statistics.median(content_latencies),
             max(content_latencies), statistics.median(alice_latencies)))
    # the < LATENCY_GOAL_MS goal is reported, not asserted: tests make no
    # timing assertions (the number depends on the machine's load)
    print('goal: median < %d ms: %s' % (
        LATENCY_GOAL_MS, 'met' if statistics.median(latencies) < LATENCY_GOAL_MS else 'NOT met'))

    # events alice's subscription filters out still reach the authority
    m = tstack.cyrus.imap('alice')
    m.select('INBOX')
    m.uid('STORE', '1', '+FLAGS', '(\\Seen)')
    m.logout()
    tap_item(police, tap, 'MessageRead')
    tap_item(police, tap, 'Logout')
    with pytest.raises(TimeoutError):
        alice.wait_message(lambda m: event_items(m) is not None, 1.0)

    # the audit trail
    recs = changelog(tstack)
    add = [r for r in recs if r['kind'] == 'tap-add']
    assert len(add) == 1 and add[0]['target'] == 'alice' and add[0]['by'] == 'boss@localhost'
    assert add[0]['reference'] == 'W-2026-17'
    relays = [r for r in recs if r['kind'] == 'tap-relay']
    assert {r['event'] for r in relays} >= {'MessageNew', 'MessageRead', 'Logout'}
    assert len([r for r in relays if r['part'] == 'content']) == 8
    assert all(r['tap'] == tap and r['authorities'] == 'police@localhost' for r in relays)
    assert ctl(tstack, 'changelog', 'verify').startswith('OK')


def test_address_tap_expires_and_relays_nothing_after(tstack):
    """A tap on an address (here: the sender) set with mailpubsubctl; it
    expires at the end of its window, is recorded as expired, and relays
    nothing after."""
    police = tstack.client('police')
    now = int(time.time())
    out = ctl(tstack, 'tap', 'add', '--target', 'Whistle@Example.com',
              '--authority', 'police@localhost', '--to', str(now + 4),
              '--reference', 'W-9')
    tap = int(out.split()[1])
    tstack.cyrus.deliver('bob', make_message(subject='to bob', sender='whistle@example.com'))
    tstack.cyrus.deliver('bob', make_message(subject='other', sender='someone@example.com'))
    tap_item(police, tap, 'MessageNew', content=False)
    _, payload = tap_item(police, tap, 'MessageNew', content=True)
    assert b'Subject: to bob' in base64.b64decode(
        payload.find('{%s}content' % NS_CONTENT).text)
    # only the matching message was relayed
    with pytest.raises(TimeoutError):
        tap_item(police, tap, 'MessageNew', timeout=1.0)

    wait_until(lambda: any(r['kind'] == 'tap-expire' and r['tap'] == tap
                           for r in changelog(tstack)), 15, what='tap expiry')
    listed = json.loads(ctl(tstack, 'tap', 'list'))
    assert [(t['id'], t['expired'], t['active']) for t in listed] == [(tap, True, False)]
    tstack.cyrus.deliver('bob', make_message(subject='after', sender='whistle@example.com'))
    with pytest.raises(TimeoutError):
        police.wait_message(lambda m: (event_items(m) or ('',))[0].startswith('mailpubsub:tap:'),
                            2.0)
    relays = [r for r in changelog(tstack) if r['kind'] == 'tap-relay']
    assert len(relays) == 2      # the event and its content, before expiry


def test_only_admins_manage_taps(tstack):
    """bob (no admin) sees no commands and is refused every one; the admin
    lists and removes; every change is in the changelog."""
    bob = tstack.client('bob')
    boss = tstack.client('boss')
    items = bob.iq(disco_iq(COMPONENT, NS_DISCO_ITEMS, NS_COMMANDS))
    assert iq_type(items) == 'result'
    assert items.find('{%s}query/{%s}item' % (NS_DISCO_ITEMS, NS_DISCO_ITEMS)) is None
    for node in ('tap-add', 'tap-list', 'tap-remove'):
        assert error_of(command(bob, node))[:2] == ('auth', 'forbidden')
    assert error_of(command(bob, 'tap-add', {'target': 'alice', 'authorities': 'bob@localhost',
                                             'not_after': '2099-01-01T00:00:00Z',
                                             'reference': 'x'}))[:2] == ('auth', 'forbidden')
    assert json.loads(ctl(tstack, 'tap', 'list')) == []

    items = boss.iq(disco_iq(COMPONENT, NS_DISCO_ITEMS, NS_COMMANDS))
    nodes = [i.get('node') for i in items.iter('{%s}item' % NS_DISCO_ITEMS)]
    assert nodes == ['tap-add', 'tap-list', 'tap-remove']
    tap = add_tap(boss, 'alice', 'police@localhost, boss@localhost')
    # a window that ends before it starts is refused
    bad = command(boss, 'tap-add', {'target': 'alice', 'authorities': 'police@localhost',
                                    'not_before': '2030-01-01T00:00:00Z',
                                    'not_after': '2029-01-01T00:00:00Z', 'reference': 'x'})
    assert error_of(bad)[:2] == ('modify', 'bad-request')
    listed = command(boss, 'tap-list')
    cmd = listed.find('{%s}command' % NS_COMMANDS)
    assert cmd.get('status') == 'completed'
    rows = cmd.findall('{%s}x/{%s}item' % (NS_DATA, NS_DATA))
    assert len(rows) == 1
    vals = {f.get('var'): f.find('{%s}value' % NS_DATA).text for f in rows[0]}
    assert (vals['id'], vals['target'], vals['authorities'], vals['active']) == \
        (str(tap), 'alice', 'police@localhost boss@localhost', 'true')
    first = command(boss, 'tap-remove').find('{%s}command' % NS_COMMANDS)
    done = command(boss, 'tap-remove', {'id': str(tap)}, first.get('sessionid'))
    assert done.find('{%s}command' % NS_COMMANDS).get('status') == 'completed'
    assert json.loads(ctl(tstack, 'tap', 'list')) == []
    assert error_of(command(boss, 'tap-remove', {'id': str(tap)}))[1] == 'item-not-found'
    kinds = [(r['kind'], r.get('by')) for r in changelog(tstack) if r['kind'].startswith('tap-')]
    assert kinds == [('tap-add', 'boss@localhost'), ('tap-remove', 'boss@localhost')]
