"""Reliability: nothing accepted is lost, gaps Cyrus causes are detected
(issue: reliability; more of it to come)."""
import signal
import sqlite3
import threading
import time

import pytest

from harness import make_message, wait_until
from stack import (NS_ITEM, Stack, child_text, event_items, iq_type, items_iq,
                   mailbox_of, service_jid, subscribe_iq, wait_event)

ALICE_SVC = service_jid('alice')


@pytest.fixture
def stack(workdir):
    s = Stack(workdir, users=('alice',))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def subscribe_all(stack, client):
    stack.cyrus.deliver('alice', make_message(subject='first'))
    wait_until(lambda: iq_type(client.iq(items_iq(ALICE_SVC, 'INBOX'))) == 'result',
               10, what='INBOX node')
    reply = client.iq(subscribe_iq(ALICE_SVC, 'INBOX', 'alice@localhost', {
        'mailpubsub#events': ['MessageNew', 'vnd.mailpubsub.MailboxStatus']}))
    assert iq_type(reply) == 'result'


def collect(client, seen, stop):
    """Every item the client receives: (item id, type, uid)."""
    while not stop.is_set():
        try:
            m = client.wait_message(lambda m: event_items(m) is not None, 0.2)
        except TimeoutError:
            continue
        for item_id, p in event_items(m)[1]:
            box = mailbox_of(p)
            seen.append((item_id, p.get('type'), box.get('uid') if box is not None else None,
                         child_text(p, 'messages')))


def journaled_message_new(db):
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute(
            "SELECT seq FROM journal WHERE type = 'MessageNew' ORDER BY seq")]
    finally:
        con.close()


def test_kill9_while_cyrus_delivers(stack):
    """kill -9 of mailpubsubd during a steady stream of LMTP deliveries
    (~20/s): every event it had journaled reaches the subscriber after the
    restart, each once after dropping repeats by item id, in mailbox order;
    deliveries Cyrus made while it was down show up as a resync marker
    with the store's counts."""
    alice = stack.client('alice')
    subscribe_all(stack, alice)
    seen, stop = [], threading.Event()
    reader = threading.Thread(target=collect, args=(alice, seen, stop))
    reader.start()
    total = 120
    delivered = []

    def deliver():
        for i in range(total):
            stack.cyrus.deliver('alice', make_message(subject='n%d' % i))
            delivered.append(i)
            time.sleep(0.05)
    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        wait_until(lambda: len(delivered) >= total // 3, 30, what='deliveries')
        stack.daemon.kill(signal.SIGKILL)
        stack.daemon.wait(10)
        stack.daemon = None
        time.sleep(0.3)           # Cyrus drops what it sends meanwhile
        stack.start_daemon()
        sender.join(60)
        wait_until(lambda: any(t == 'MessageNew' and u == str(total + 1)
                               for _, t, u, _ in seen), 20, what='last delivery')
        time.sleep(0.5)
    finally:
        stop.set()
        reader.join(5)
        sender.join(5)

    by_id = {}
    for item_id, etype, uid, messages in seen:
        by_id.setdefault(item_id, (etype, uid, messages))
    # every journaled MessageNew reached the client (live or as a repeat)
    missing = [s for s in journaled_message_new(stack.db) if str(s) not in by_id]
    assert missing == []
    # one per item id after dropping repeats, and in order
    first_seen = []
    for item_id, etype, uid, _ in seen:
        if etype == 'MessageNew' and item_id not in first_seen:
            first_seen.append(item_id)
    uids = [int(by_id[i][1]) for i in first_seen]
    assert uids == sorted(uids)
    assert len(set(uids)) == len(uids)
    # what Cyrus dropped while we were down is announced by a resync marker
    if len(uids) < total + 1:
        markers = [v for v in by_id.values() if v[0] == 'vnd.mailpubsub.MailboxStatus']
        assert markers, 'events lost without a resync marker'
    assert 'events were lost' in stack.daemon.log() or len(uids) == total + 1
    print('kill -9: %d deliveries, %d MessageNew seen, %d repeats dropped' % (
        total + 1, len(uids), len(seen) - len(by_id)))


def test_gap_is_detected_and_resynchronised(stack):
    alice = stack.client('alice')
    subscribe_all(stack, alice)
    wait_event(alice, 'MessageNew', 'INBOX')       # the last item
    stack.stop_daemon()
    for _ in range(2):
        stack.cyrus.deliver('alice', make_message())   # lost by Cyrus
    stack.start_daemon()
    stack.cyrus.deliver('alice', make_message())
    _, new = wait_event(alice, 'MessageNew', 'INBOX')
    assert mailbox_of(new).get('uid') == '4'
    _, marker = wait_event(alice, 'vnd.mailpubsub.MailboxStatus', 'INBOX')
    resync = [e.text for e in marker.iter('{%s}extension' % NS_ITEM)
              if e.get('name') == 'vnd.mailpubsub.resync']
    assert resync == ['events lost before this one']
    assert (child_text(marker, 'messages'), child_text(marker, 'unseen')) == ('4', '4')
