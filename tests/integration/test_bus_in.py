"""Several mail backends, one service (issue 17 "In"): two private Cyrus
instances, each with an ingesting mailpubsubd publishing to one private
RabbitMQ; a front mailpubsubd consumes the queue ([bus] consume) behind
Prosody and asks each account's ACLs of the Cyrus that holds it
([backends]). Exactly-once into the front's journal: a redelivered or
replayed message-id is journaled once."""
import json
import os
import re
import signal
import threading

import pytest

from bus_stack import QUEUE, BusStack
from harness import make_message, wait_until
from rabbitmq import USER as BUS_USER
from stack import (NS_PUBSUB, error_of, event_items, iq_type, items_iq,
                   service_jid, subscribe_iq)

HIDDEN = ('cancel', 'item-not-found', None, None)


@pytest.fixture
def bus(workdir):
    s = BusStack(workdir)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def origin_count(bus, instance=None):
    if instance is None:
        return bus.front_journal('SELECT count(*) FROM journal_origin')
    return bus.front_journal('SELECT count(*) FROM journal_origin WHERE origin_id '
                             'LIKE ?', (instance + ':%',))


def wait_all_through(bus, timeout=60):
    """Until the front journaled every event both backends journaled (each
    goes to the bus once at least)."""
    def done():
        want = {b.name: b.journal_count() for b in bus.backends}
        have = {n: origin_count(bus, n) for n in want}
        return have == want and want
    return wait_until(done, timeout, interval=0.2,
                      what='front journal to hold every backend event')


def subscribe(client, account, node='INBOX'):
    reply = client.iq(subscribe_iq(service_jid(account), node,
                                   client.jid.split('/')[0]))
    if iq_type(reply) != 'result':
        return error_of(reply)
    sub = reply.find('{%s}pubsub/{%s}subscription' % (NS_PUBSUB, NS_PUBSUB))
    return sub.get('subscription')


def from_account(account, etype='MessageNew'):
    def match(msg):
        got = event_items(msg)
        return (got is not None and msg.get('from', '').split('/')[0] ==
                service_jid(account) and
                any(p is not None and p.get('type') == etype for _, p in got[1]))
    return match


def deliver(backend, user, subject):
    backend.cyrus.deliver(user, make_message(subject=subject))


def node_known(bus, client, account):
    """The front knows account's INBOX once an event of it came over the
    bus (the owner may read its items)."""
    wait_until(lambda: iq_type(client.iq(items_iq(service_jid(account), 'INBOX')))
               == 'result', 30, what='%s INBOX on the front' % account)


def test_two_backends_one_service(bus):
    b1, b2 = bus.backends
    # dave (b2's user) may read alice's INBOX on b1 and bob's on b2;
    # carol (b1's user) may read alice's, and nothing of bob's on b2
    b1.cyrus.setacl('user/alice', 'dave', 'lr')
    b1.cyrus.setacl('user/alice', 'carol', 'lr')
    b2.cyrus.setacl('user/bob', 'dave', 'lr')
    deliver(b1, 'alice', 'first for alice')
    deliver(b2, 'bob', 'first for bob')
    alice, bob = bus.client('alice'), bus.client('bob')
    node_known(bus, alice, 'alice')
    # the owner of an account on b2 is granted: the front asked b2 (b1
    # has no user/bob: its MYRIGHTS would have been NO)
    node_known(bus, bob, 'bob')
    assert subscribe(bob, 'bob') == 'subscribed'
    dave, carol = bus.client('dave'), bus.client('carol')
    assert subscribe(dave, 'alice') == 'subscribed'
    assert subscribe(dave, 'bob') == 'subscribed'
    assert subscribe(carol, 'alice') == 'subscribed'
    # no `l` on b2: bob's INBOX is not there for carol
    assert subscribe(carol, 'bob') == HIDDEN

    deliver(b1, 'alice', 'second for alice')
    deliver(b2, 'bob', 'second for bob')
    for who, account in ((dave, 'alice'), (dave, 'bob'), (carol, 'alice'),
                         (bob, 'bob')):
        msg = who.wait_message(from_account(account), timeout=30)
        _, items = event_items(msg)
        payload = items[0][1]
        assert payload.find('{urn:mailpubsub:event:0}mailbox').get('account') == account
    # carol gets nothing of bob's, though his event went by
    with pytest.raises(Exception):
        carol.wait_message(from_account('bob'), timeout=3)
    wait_all_through(bus)
    # the items the front publishes are the backend's: no producer keys
    row = bus.front_journal("SELECT json FROM journal WHERE source = 'bus' AND "
                            "type = 'MessageNew' AND account = 'bob' LIMIT 1")
    event = json.loads(row)
    for key in ('seq', 'instance', 'source', 'received', 'account', 'node'):
        assert key not in event, key
    assert event['uri'].startswith('imap://')


def publish(bus, message_id, body, properties):
    from proton import Message, Terminus
    from proton.utils import BlockingConnection

    class Durable:
        def apply(self, link):
            link.target.durability = Terminus.DELIVERIES

        def test(self, link):
            return True

    conn = BlockingConnection(bus.broker.url, user=BUS_USER,
                              password=bus.broker.password, allowed_mechs='PLAIN',
                              allow_insecure_mechs=True, timeout=30)
    try:
        sender = conn.create_sender(QUEUE, options=Durable())
        sender.send(Message(id=message_id, body=body.encode(), durable=True,
                            content_type='application/json', properties=properties))
    finally:
        conn.close()


def test_replayed_message_id_journaled_once(bus):
    b1 = bus.backends[0]
    deliver(b1, 'alice', 'replayed')
    # the MessageNew first: "all through" may hold before b1 journaled it
    # (seen under ASan on a loaded machine)
    wait_until(lambda: bus.front_journal(
        "SELECT count(*) FROM journal_origin o JOIN journal j USING (seq) WHERE "
        "j.type = 'MessageNew'") >= 1, 60, what='the MessageNew over the bus')
    wait_all_through(bus)
    origin = bus.front_journal(
        "SELECT origin_id FROM journal_origin o JOIN journal j USING (seq) WHERE "
        "j.type = 'MessageNew' LIMIT 1")
    seq = int(origin.split(':')[1])
    db_json = bus.front_journal("SELECT json FROM journal j JOIN journal_origin o "
                                "USING (seq) WHERE o.origin_id = ?", (origin,))
    before = bus.front_journal()
    body = json.loads(db_json)
    body.update({'seq': seq, 'instance': 'b1', 'source': 'cyrus',
                 'account': 'alice', 'node': 'INBOX'})
    # the same message again, as a producer resending after its crash
    publish(bus, origin, json.dumps(body), {'seq': seq, 'instance': 'b1'})
    bus.front.wait_log(r'bus in: %s already journaled as \d+: accepted, skipped'
                       % re.escape(origin), timeout=30)
    # a message-id never seen is journaled: the check above is not a
    # refusal of everything replayed
    publish(bus, 'b1:999999', json.dumps(body), {'seq': 999999, 'instance': 'b1'})
    wait_until(lambda: bus.front_journal() == before + 1, 30,
               what='the new message-id journaled')
    assert bus.front_journal('SELECT count(*) FROM journal_origin WHERE '
                             'origin_id = ?', (origin,)) == 1
    # hostile bodies are rejected (the broker drops them: no dead-letter
    # exchange here), counted, and the front goes on
    for i, junk in enumerate(('not json', '[1,2]', '{"event": 7}',
                              '{"event":"NoSuchEvent"}',
                              '{"event":"MessageNew"' + ' ' * 2000000 + '}')):
        publish(bus, 'junk:%d' % i, junk, {'instance': 'junk'})
    for i in range(5):
        bus.front.wait_log(r"bus in: message 'junk:\d' rejected", timeout=30)
    publish(bus, 'b1:1000000', json.dumps(body), {'seq': 1000000, 'instance': 'b1'})
    wait_until(lambda: bus.front_journal() == before + 2, 30,
               what='journaling goes on after the junk')
    assert bus.front_journal("SELECT count(*) FROM journal WHERE type = 'MessageNew'"
                             " AND json = ?", (db_json,)) == 3   # b1:N, :999999, :1000000
    # the queue is empty: every message was settled
    wait_until(lambda: bus.broker.queue_length(QUEUE.split('/')[-1]) == 0, 30,
               what='queue drained')
    bus.front.stop()
    stats = re.search(r'bus in: received=(\d+) appended=(\d+) duplicates=(\d+) '
                      r'rejected=(\d+)', bus.front.log())
    assert stats is not None and int(stats.group(3)) >= 1 and int(stats.group(4)) == 5


def test_kill9_front_exactly_once(bus):
    """kill -9 of the front and of the backends while messages stream in:
    redelivered and resent messages are skipped; nothing is journaled
    twice, nothing the backends journaled is lost."""
    b1, b2 = bus.backends
    n = 300
    done = threading.Event()

    def flood():
        try:
            for i in range(n):
                deliver(b1 if i % 2 else b2, 'alice' if i % 2 else 'bob',
                        'flood %d' % i)
        finally:
            done.set()
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    # kills while messages stream in, of the front (what it committed and
    # had not settled comes again) and of the backends (what the broker
    # accepted after their last saved watermark is sent again, with the
    # same message-ids)
    kills = []
    for victim in ('front', 'b1', 'front', 'b2'):
        mark = origin_count(bus) + 40
        wait_until(lambda: origin_count(bus) >= mark or done.is_set(), 60,
                   what='front under way')
        if victim == 'front':
            os.kill(bus.front.pid, signal.SIGKILL)
            bus.front.wait(10)
            bus.start_front()
        else:
            b = bus.backends[0 if victim == 'b1' else 1]
            os.kill(b.daemon.pid, signal.SIGKILL)
            b.daemon.wait(10)
            b.daemon = bus._daemon(b.conf, b.name)
        kills.append('%s@%d' % (victim, origin_count(bus)))
    t.join(120)
    assert done.is_set()
    wait_all_through(bus, timeout=120)

    # Cyrus may journal an event more after that (the Logout of an IMAP
    # session of the test, seen under ASan: 612 through of 613): compare
    # once the three counts agree, or with what they are after a minute
    def counts():
        return (sum(b.journal_count() for b in bus.backends), origin_count(bus),
                bus.front_journal("SELECT count(*) FROM journal WHERE source = 'bus'"))
    try:
        wait_until(lambda: len(set(counts())) == 1, 60, interval=0.5,
                   what='the backends, the origins and the front journal to agree')
    except TimeoutError:
        pass
    total, origins, rows = counts()
    # once each: the origin table is keyed by message-id, and every bus
    # row has exactly one origin
    assert origins == total
    assert rows == total
    skipped = len(re.findall(r'already journaled as', bus.front.log()))
    print('\nkill -9 at %s of %d journaled; after the restarts %d redelivered '
          'and skipped' % (kills, total, skipped))
