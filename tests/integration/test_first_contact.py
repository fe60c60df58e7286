"""First contact: mailpubsubd started with an empty store next to a Cyrus
that already has accounts and mail. A new client's very first request about
an account or mailbox is answered after asking the store, truthfully, in the
same request; under both Cyrus set-ups the README documents (admin_user in
`admins`, or only in `proxyservers`). Authorization runs before any
existence check, so a mailbox the asker may not see gets the same answer
whether it exists or not (issue 15 items 1-2, issue 14 finding 7)."""
import os
import re
import signal
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from harness import make_message, wait_until
from stack import (CYRUS_SETUPS, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB,
                   Stack, disco_iq, error_of, iq_type, items_iq, options_iq,
                   service_jid, subscribe_iq, unsubscribe_iq, wait_event)

NOT_FOUND = ('cancel', 'item-not-found', None, None)
TIMEOUT = ('wait', 'remote-server-timeout', None, None)
USERS = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank')


@pytest.fixture(params=CYRUS_SETUPS)
def stack(workdir, request):
    """Prosody and a Cyrus whose accounts already have folders and mail;
    mailpubsubd (empty store) is started by the test, after the mail."""
    s = Stack(workdir, users=USERS, cyrus_setup=request.param)
    try:
        s.start(start_daemon=False)
        populate(s)
        yield s
    finally:
        s.stop()


def populate(s):
    """Folders and mail that exist before mailpubsubd ever runs: nothing is
    bound to the notify socket, so Cyrus's events about them are lost.
    ghost has an XMPP account but no mailbox."""
    s.prosody.register('ghost', 'secret-pw')
    cy = s.cyrus
    for user in USERS:
        cy.create_mailbox(cy.mailbox(user, 'Projects'))
        cy.create_mailbox(cy.mailbox(user, 'Secret'))
        cy.deliver(user, make_message(subject='old mail of %s' % user))
    assert not os.path.exists(s.notify_socket)


def start(s):
    s.start_daemon()
    return s


def nodes_of(reply):
    return sorted(i.get('node') for i in reply.iter('{%s}item' % NS_DISCO_ITEMS)
                  if i.get('node') is not None)


def bare(client):
    return client.jid.split('/')[0]


def test_first_requests_answered_from_the_store(stack):
    start(stack)
    alice, bob, carol = (stack.client(u) for u in ('alice', 'bob', 'carol'))
    dave, erin = stack.client('dave'), stack.client('erin')

    # disco#items of the account service: the store's mailboxes, at once
    reply = alice.iq(disco_iq(service_jid('alice'), NS_DISCO_ITEMS))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    assert nodes_of(reply) == ['INBOX']
    reply = alice.iq(disco_iq(service_jid('alice'), NS_DISCO_ITEMS, 'INBOX'))
    assert nodes_of(reply) == ['INBOX/Projects', 'INBOX/Secret']

    # disco#info on a node of an account nobody asked about
    reply = bob.iq(disco_iq(service_jid('bob'), NS_DISCO_INFO, 'INBOX/Projects'))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    ident = reply.find('{%s}query/{%s}identity' % (NS_DISCO_INFO, NS_DISCO_INFO))
    assert (ident.get('category'), ident.get('type')) == ('pubsub', 'leaf')

    # subscribe as the first request; then the mail that follows arrives
    reply = carol.iq(subscribe_iq(service_jid('carol'), 'INBOX', bare(carol)))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    sub = reply.find('{%s}pubsub/{%s}subscription' % (NS_PUBSUB, NS_PUBSUB))
    assert sub.get('subscription') == 'subscribed'
    stack.cyrus.deliver('carol', make_message(subject='new for carol'))
    _, payload = wait_event(carol, 'MessageNew', 'INBOX')
    assert payload is not None

    # items as the first request: the node exists, nothing published yet
    reply = dave.iq(items_iq(service_jid('dave'), 'INBOX/Projects'))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    items = reply.find('{%s}pubsub/{%s}items' % (NS_PUBSUB, NS_PUBSUB))
    assert items.get('node') == 'INBOX/Projects' and len(items) == 0

    # options and unsubscribe without a subscription: not-subscribed (the
    # node exists), not item-not-found
    for iq in (options_iq(service_jid('erin'), 'INBOX', bare(erin)),
               unsubscribe_iq(service_jid('erin'), 'INBOX', bare(erin))):
        assert error_of(erin.iq(iq)) == ('cancel', 'unexpected-request',
                                          'not-subscribed', None)

    log = stack.daemon.log()
    for user in ('alice', 'bob', 'carol', 'dave', 'erin'):
        assert re.search(r'discovery: %s: .* asked for; LIST on demand' % user, log), user


def test_nonexistent_account_and_mailbox(stack):
    start(stack)
    alice = stack.client('alice')
    ghost = stack.client('ghost')
    for node in ('INBOX', 'INBOX/Projects'):
        # an account the store does not have
        assert error_of(alice.iq(subscribe_iq(service_jid('nosuch'), node,
                                              bare(alice)))) == NOT_FOUND
        assert error_of(alice.iq(disco_iq(service_jid('nosuch'), NS_DISCO_INFO,
                                          node))) == NOT_FOUND
        # its owner asking: no mailbox, so nothing to find
        assert error_of(ghost.iq(subscribe_iq(service_jid('ghost'), node,
                                              bare(ghost)))) == NOT_FOUND
        assert error_of(ghost.iq(items_iq(service_jid('ghost'), node))) == NOT_FOUND
    reply = ghost.iq(disco_iq(service_jid('ghost'), NS_DISCO_ITEMS))
    assert iq_type(reply) == 'result' and nodes_of(reply) == []
    # a mailbox alice does not have, in her own account
    assert error_of(alice.iq(subscribe_iq(service_jid('alice'), 'INBOX/Nope',
                                          bare(alice)))) == NOT_FOUND


def same_answer_requests(asker, account, node):
    to, jid = service_jid(account), bare(asker)
    return {
        'subscribe': subscribe_iq(to, node, jid),
        'items': items_iq(to, node),
        'unsubscribe': unsubscribe_iq(to, node, jid),
        'options': options_iq(to, node, jid),
        'disco#info': disco_iq(to, NS_DISCO_INFO, node),
        'disco#items': disco_iq(to, NS_DISCO_ITEMS, node),
    }


def test_no_rights_same_answer_whether_it_exists(stack):
    """bob has no rights on alice's folders: Secret (exists) and Nothing
    (does not) must look the same to him, first contact or not."""
    start(stack)
    bob = stack.client('bob')
    for round_ in ('first contact', 'account known'):
        for what in ('subscribe', 'items', 'unsubscribe', 'options',
                     'disco#info', 'disco#items'):
            secret = bob.iq(same_answer_requests(bob, 'alice', 'INBOX/Secret')[what])
            nothing = bob.iq(same_answer_requests(bob, 'alice', 'INBOX/Nothing')[what])
            assert error_of(secret) == error_of(nothing) == NOT_FOUND, (round_, what)
        # the second round: alice's folders are in the tree now
        alice = stack.client('alice')
        wait_until(lambda: 'INBOX/Secret' in nodes_of(alice.iq(disco_iq(
            service_jid('alice'), NS_DISCO_ITEMS, 'INBOX'))), 10,
            what="alice's folders known")
    # with l but not r, existence is no secret: closed-node
    stack.cyrus.setacl(stack.cyrus.mailbox('alice', 'Projects'), 'bob', 'l')
    reply = bob.iq(subscribe_iq(service_jid('alice'), 'INBOX/Projects', bare(bob)))
    assert error_of(reply) == ('cancel', 'not-allowed', 'closed-node', None)


def test_concurrent_first_requests_share_one_list(stack):
    start(stack)
    alice = stack.client('alice')
    requests = [disco_iq(service_jid('alice'), NS_DISCO_ITEMS)] * 4 + [
        disco_iq(service_jid('alice'), NS_DISCO_INFO, 'INBOX'),
        items_iq(service_jid('alice'), 'INBOX/Projects'),
        subscribe_iq(service_jid('alice'), 'INBOX', bare(alice)),
    ]
    replies = [None] * len(requests)
    go = threading.Barrier(len(requests))

    def ask(i):
        go.wait()
        replies[i] = alice.iq(requests[i])
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and iq_type(r) == 'result' for r in replies), \
        [ET.tostring(r, 'unicode') for r in replies if r is not None]
    assert nodes_of(replies[0]) == ['INBOX']
    log = stack.daemon.log()
    started = re.findall(r'discovery: alice: .* LIST on demand', log)
    joined = re.findall(r'discovery: alice: .* waiting for the LIST under way', log)
    listed = re.findall(r'discovery: alice: \d+ mailboxes listed', log)
    print('first requests: %d LIST started, %d joined it' % (len(started), len(joined)))
    assert len(started) == 1 and len(listed) == 1
    assert len(joined) >= 1


def test_store_down_is_a_temporary_error(stack):
    start(stack)
    alice = stack.client('alice')
    bob = stack.client('bob')
    # the store hangs (every Cyrus process stopped: connections are
    # accepted by the kernel, never greeted): the wait ends at [imap]
    # timeout_ms (2 s)
    stopped = stack.cyrus.leftover_pids()
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        reply = alice.iq(disco_iq(service_jid('alice'), NS_DISCO_ITEMS), timeout=20)
        took = time.monotonic() - t0
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert error_of(reply) == TIMEOUT
    print('hung store: answered after %.1f s' % took)
    assert took < 10
    # the store is down: every first request is a temporary error
    stack.cyrus.stop()
    for iq in (disco_iq(service_jid('bob'), NS_DISCO_ITEMS),
               disco_iq(service_jid('bob'), NS_DISCO_INFO, 'INBOX'),
               subscribe_iq(service_jid('bob'), 'INBOX', bare(bob)),
               items_iq(service_jid('bob'), 'INBOX'),
               options_iq(service_jid('bob'), 'INBOX', bare(bob))):
        assert error_of(bob.iq(iq, timeout=20)) == TIMEOUT, iq
    # back: the same first request is answered
    stack.cyrus.start()
    wait_until(lambda: iq_type(bob.iq(subscribe_iq(service_jid('bob'), 'INBOX',
                                                   bare(bob)))) == 'result',
               40, interval=0.5, what='subscribe once the store is back')
