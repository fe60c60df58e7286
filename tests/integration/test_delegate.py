"""Delegated fan-out ([delegate] service): Prosody's own mod_pubsub sends the
notifications of plain subscriptions, and the ACL guarantee holds: only JIDs
the store lets read the mailbox are ever on the server's node, a JID that
loses its rights gets nothing more, and nobody can subscribe there behind
mailpubsubd's back. Real Cyrus, real Prosody (and ejabberd for the
guarantee), real clients."""
import pytest

from harness import make_message
from stack import (Stack, error_of, event_items, iq_type, items_iq,
                   service_jid, subscribe_iq, unsubscribe_iq, validate_payload)

ALICE_SVC = service_jid('alice')
PUBSUB = 'pubsub.localhost'
NODE = 'alice/INBOX'          # the server node mirroring alice's INBOX
PUBSUB_COMPONENT = '''
Component "%s" "pubsub"
    admins = { "events.localhost" }
''' % PUBSUB


def delegated_stack(workdir, admin=True):
    s = Stack(workdir, users=('alice', 'bob', 'carol'),
              config={'delegate': {'service': PUBSUB}})
    s.prosody.extra_config = PUBSUB_COMPONENT if admin else \
        'Component "%s" "pubsub"\n' % PUBSUB
    return s


@pytest.fixture
def stack(workdir):
    s = delegated_stack(workdir)
    try:
        s.start()
        s.daemon.wait_log(r'delegate: plain subscriptions are published through')
        yield s
    finally:
        s.stop()


def subscribe(client, node='INBOX', options=None):
    reply = client.iq(subscribe_iq(ALICE_SVC, node, client.jid.split('/')[0],
                                   options))
    assert iq_type(reply) == 'result', reply
    return reply


def deliver(stack, subject):
    stack.cyrus.deliver('alice', make_message(subject=subject))


def from_server(msg):
    return msg.get('from') == PUBSUB and event_items(msg) is not None


def wait_new(client, source, timeout=10.0):
    """The next MessageNew notification from source, dropping repeats by
    item id as a client does (events handed to a connection that broke
    are published again after it is back); its payload."""
    last = getattr(client, 'last_item', 0)

    def fresh(m):
        got = event_items(m)
        # the last item, sent on subscribe, is history (it has a delay)
        if m.find('{urn:xmpp:delay}delay') is not None:
            return False
        return got is not None and any(
            int(i) > last and p is not None and p.get('type') == 'MessageNew'
            for i, p in got[1])
    msg = client.wait_message(fresh, timeout)
    assert msg.get('from') == source, (msg.get('from'), source)
    item_id, payload = event_items(msg)[1][0]
    client.last_item = int(item_id)
    validate_payload(payload)
    return msg, payload


def nothing_from(client, source, seconds=2.0):
    try:
        client.wait_message(lambda m: m.get('from') == source and
                            event_items(m) is not None, seconds)
    except TimeoutError:
        return
    raise AssertionError('unexpected notification from %s' % source)


def grant_bob(stack, rights):
    imap = stack.cyrus.imap('alice')
    typ, data = imap.setacl('INBOX', 'bob', rights) if rights else \
        imap.deleteacl('INBOX', 'bob')
    assert typ == 'OK', data
    imap.logout()
    stack.daemon.wait_log(r'ingest: #\d+ AclChange alice/INBOX')


def test_plain_subscriptions_go_through_the_server(stack):
    # Prosody refuses a non-member of a whitelist node with forbidden
    check_plain_subscriptions(stack, ('auth', 'forbidden'))


@pytest.fixture
def ejabberd_stack(workdir):
    """The same behind ejabberd 23.01: mailpubsubd's component domain may
    create nodes on its mod_pubsub (access_createnode), and owns those it
    made, which is all [delegate] needs there."""
    from ejabberd import Ejabberd
    from stack import COMPONENT
    s = Stack(workdir, users=('alice', 'bob', 'carol'),
              config={'delegate': {'service': PUBSUB}},
              xmpp_server=Ejabberd(workdir, component_domain=COMPONENT,
                                   pubsub_host=PUBSUB,
                                   pubsub_creators=(COMPONENT,)))
    try:
        s.start()
        s.daemon.wait_log(r'delegate: plain subscriptions are published through',
                          timeout=30)
        yield s
    finally:
        s.stop()


def test_plain_subscriptions_go_through_ejabberd(ejabberd_stack):
    # ejabberd refuses a non-member of a whitelist node as XEP-0060 6.1.3.4
    # says: not-allowed with closed-node
    check_plain_subscriptions(ejabberd_stack, ('cancel', 'not-allowed'))


def check_plain_subscriptions(stack, refused):
    """Plain subscribers get the item from the server's pubsub, a
    subscriber with options directly; a reader who is not a member, or a
    subscriber who lost the rights, gets nothing through the server."""
    alice, bob, carol = (stack.client(u) for u in ('alice', 'bob', 'carol'))
    grant_bob(stack, 'lr')
    subscribe(alice)
    subscribe(bob)
    # carol may read too, but asked for MessageNew only: not a plain
    # subscription, so hers stays direct, from alice's service
    typ, data = stack.cyrus.imap('alice').setacl('INBOX', 'carol', 'lr')
    assert typ == 'OK', data
    stack.daemon.wait_log(r'ingest: #\d+ AclChange alice/INBOX')
    subscribe(carol, options={'mailpubsub#events': 'MessageNew'})

    deliver(stack, 'one')
    ids = set()
    for c in (alice, bob):
        msg, payload = wait_new(c, PUBSUB)
        node, items = event_items(msg)
        assert node == NODE
        ids.add(items[0][0])
    msg, _ = wait_new(carol, ALICE_SVC)
    # the same item (id = journal sequence) by either path, so a client
    # with both can drop repeats
    ids.add(event_items(msg)[1][0][0])
    assert len(ids) == 1
    # nobody gets around mailpubsubd: carol's rights do not make her a
    # member of the server's node, and the node keeps no items
    reply = carol.iq(subscribe_iq(PUBSUB, NODE, 'carol@localhost'))
    assert error_of(reply)[:2] == refused, error_of(reply)
    reply = carol.iq(items_iq(PUBSUB, NODE))
    assert iq_type(reply) == 'error'

    # bob loses his rights: he is off the node before the next publish
    grant_bob(stack, '')
    stack.daemon.wait_log(r'rights gone: ended subscription of bob@localhost')
    deliver(stack, 'two')
    _, payload = wait_new(alice, PUBSUB)
    nothing_from(bob, PUBSUB, 3)
    # and cannot come back on his own
    reply = bob.iq(subscribe_iq(PUBSUB, NODE, bob.jid.split('/')[0]))
    assert iq_type(reply) == 'error'
    wait_new(carol, ALICE_SVC)


def test_unsubscribe_and_restarts(stack):
    alice, bob = stack.client('alice'), stack.client('bob')
    grant_bob(stack, 'lr')
    subscribe(alice)
    subscribe(bob)
    deliver(stack, 'before')
    wait_new(alice, PUBSUB)
    wait_new(bob, PUBSUB)

    # Prosody restarts (its pubsub data is on disk and keeps the node with
    # bob on it); meanwhile bob unsubscribes from mailpubsubd as soon as
    # it is back: the first publish after reconnecting rebuilds the node
    for c in stack.clients:
        c.disconnect()
    stack.clients = []
    stack.prosody.stop()
    stack.prosody.start()
    stack.daemon.wait_log(r'delegate: plain subscriptions are published through',
                          timeout=60)
    alice, bob = stack.client('alice'), stack.client('bob')
    reply = bob.iq(unsubscribe_iq(ALICE_SVC, 'INBOX', 'bob@localhost'))
    assert iq_type(reply) == 'result'
    deliver(stack, 'after')
    wait_new(alice, PUBSUB)
    nothing_from(bob, PUBSUB, 3)

    # mailpubsubd restarts: subscriptions are its own, the node is rebuilt
    stack.stop_daemon()
    stack.start_daemon()
    stack.daemon.wait_log(r'delegate: plain subscriptions are published through')
    subscribe(bob)
    # alice's rights were cached by the daemon that stopped: this event
    # reaches her directly once the store has answered again
    deliver(stack, 'again')
    wait_new(alice, ALICE_SVC)
    wait_new(bob, PUBSUB)
    deliver(stack, 'and again')
    wait_new(alice, PUBSUB)
    wait_new(bob, PUBSUB)


def test_refused_delegation_falls_back_to_direct(workdir):
    s = delegated_stack(workdir, admin=False)
    try:
        s.start()
        s.daemon.wait_log(r'delegate: pubsub.localhost refused to create a node')
        alice = s.client('alice')
        subscribe(alice)
        deliver(s, 'direct')
        wait_new(alice, ALICE_SVC)
    finally:
        s.stop()


def test_only_the_service_answers_the_probe(workdir):
    """A client that answers the delegation probe in the service's place
    (a result with the probe's id) is ignored: delegation stays off for a
    service that refused us, and notifications still go directly. Before,
    its answer switched delegation on and alice got nothing."""
    s = delegated_stack(workdir, admin=False)
    try:
        s.start()
        s.daemon.wait_log(r'delegate: pubsub.localhost refused to create a node')
        carol = s.client('carol')
        for n in range(1, 4):
            carol.send("<iq type='result' id='mpsd-dg-cre-%d' to='%s'/>"
                       % (n, ALICE_SVC.split('@')[1]))
            carol.send("<iq type='error' id='mpsd-dg-pub-%d' to='%s'><error type='cancel'>"
                       "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                       "</error></iq>" % (n, ALICE_SVC.split('@')[1]))
        s.daemon.wait_log(r'delegate: ignored a reply to mpsd-dg-cre-1 from carol@localhost/')
        s.daemon.wait_log(r'delegate: ignored a reply to mpsd-dg-pub-3 from carol@localhost/')
        alice = s.client('alice')
        subscribe(alice)
        deliver(s, 'direct')
        wait_new(alice, ALICE_SVC)
        assert 'plain subscriptions are published through' not in s.daemon.log()
    finally:
        s.stop()
