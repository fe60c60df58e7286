"""What subscribers need: subtree subscriptions, event filters, counts for
message-waiting indicators in every item, heartbeats (issue: subscribers)."""
import re
import xml.etree.ElementTree as ET

import pytest

from harness import make_message, wait_until
from stack import (NS_DELAY, NS_ITEM, NS_PUBSUB, Stack, child_text, error_of,
                   event_items, iq_type, items_iq, options_iq,
                   service_jid, subscribe_iq, wait_event)

ALICE_SVC = service_jid('alice')


@pytest.fixture
def stack(workdir):
    s = Stack(workdir, users=('alice', 'bob'),
              config={'pubsub': {'heartbeat_interval': 1}})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def subscribe(client, node, options=None, to=ALICE_SVC):
    reply = client.iq(subscribe_iq(to, node, client.jid.split('/')[0], options))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    return reply


def wait_node(client, node, to=ALICE_SVC):
    wait_until(lambda: iq_type(client.iq(items_iq(to, node))) == 'result', 10,
               what='node %s' % node)


def drain(client, quiet=0.3):
    """Drops what has arrived so far (last items on subscribe and the like)."""
    while True:
        try:
            client.wait_message(None, quiet)
        except TimeoutError:
            return


def no_event(client, etype=None, node=None, within=1.0):
    def match(m):
        got = event_items(m)
        if got is None:
            return False
        n, items = got
        return (node is None or n == node) and any(
            p is not None and (etype is None or p.get('type') == etype) for _, p in items)
    with pytest.raises(TimeoutError):
        client.wait_message(match, within)


def imap_status(stack, mailbox):
    m = stack.cyrus.imap('alice')
    typ, data = m.status(mailbox, '(MESSAGES UNSEEN)')
    m.logout()
    assert typ == 'OK', data
    found = re.search(rb'MESSAGES (\d+) UNSEEN (\d+)', data[0])
    return int(found.group(1)), int(found.group(2))


def test_subtree_and_depth(stack):
    alice = stack.client('alice')
    imap = stack.cyrus.imap('alice')
    imap.create('INBOX/A')
    wait_node(alice, 'INBOX/A')
    subscribe(alice, 'INBOX', {'pubsub#subscription_depth': 'all'})
    drain(alice)
    # a mailbox created after subscribing is covered, and so are its events
    assert imap.create('INBOX/A/New')[0] == 'OK'
    _, created = wait_event(alice, 'MailboxCreate', 'INBOX/A/New')
    assert child_text(created, 'messages') == '0'   # a new mailbox is empty
    stack.cyrus.deliver('alice', make_message(), mailbox='A/New')
    _, new = wait_event(alice, 'MessageNew', 'INBOX/A/New')
    assert child_text(new, 'messages') == '1'

    # depth 1: the children of INBOX/A, not the grandchildren
    bob_like = stack.client('alice')   # a second resource of alice
    subscribe(bob_like, 'INBOX/A', {'pubsub#subscription_depth': '1'})
    drain(bob_like)
    imap.create('INBOX/A/New/Deep')
    stack.cyrus.deliver('alice', make_message(), mailbox='A/New/Deep')
    stack.cyrus.deliver('alice', make_message(), mailbox='A/New')
    wait_event(bob_like, 'MessageNew', 'INBOX/A/New')
    # alice's depth=all subscription saw the grandchild, depth 1 did not
    wait_event(alice, 'MessageNew', 'INBOX/A/New/Deep')
    no_event(bob_like, 'MessageNew', 'INBOX/A/New/Deep', within=1.0)
    imap.logout()


def test_subtree_respects_acl_per_mailbox(stack):
    alice = stack.client('alice')
    bob = stack.client('bob')
    imap = stack.cyrus.imap('alice')
    for name in ('INBOX/Team', 'INBOX/Team/Open', 'INBOX/Team/Private'):
        imap.create(name)
    for name in ('INBOX/Team', 'INBOX/Team/Open'):
        imap.setacl(name, 'bob', 'lr')
    wait_node(alice, 'INBOX/Team/Private')
    subscribe(bob, 'INBOX/Team', {'pubsub#subscription_depth': 'all'})
    drain(bob)
    stack.cyrus.deliver('alice', make_message(subject='private'), mailbox='Team/Private')
    stack.cyrus.deliver('alice', make_message(subject='open'), mailbox='Team/Open')
    # the Open one arrives; the Private one, sent first, never does
    msg, _ = wait_event(bob, 'MessageNew', 'INBOX/Team/Open')
    no_event(bob, 'MessageNew', 'INBOX/Team/Private', within=1.0)
    assert 'mailbox=alice/INBOX/Team/Private rights=' in stack.daemon.log()
    imap.logout()


def test_event_filter_and_option_change(stack):
    alice = stack.client('alice')
    stack.cyrus.deliver('alice', make_message())
    wait_node(alice, 'INBOX')
    jid = 'alice@localhost'
    subscribe(alice, 'INBOX', {'mailpubsub#events': ['MessageNew', 'MessageExpunge']})
    drain(alice)
    # the options as stored
    form = alice.iq(options_iq(ALICE_SVC, 'INBOX', jid))
    fields = {f.get('var'): [v.text for v in f.findall('{jabber:x:data}value')]
              for f in form.iter('{jabber:x:data}field')}
    assert fields['mailpubsub#events'] == ['MessageNew', 'MessageExpunge']
    assert fields['pubsub#subscription_depth'] == ['0']
    assert fields['pubsub#deliver'] == ['true']

    imap = stack.cyrus.imap('alice')
    imap.select('INBOX')
    imap.fetch('1', '(BODY[])')                      # MessageRead: filtered out
    stack.cyrus.deliver('alice', make_message())   # MessageNew: wanted
    msg, _ = wait_event(alice, 'MessageNew', 'INBOX')
    no_event(alice, 'MessageRead', within=0.8)

    # the change takes effect at once
    reply = alice.iq(options_iq(ALICE_SVC, 'INBOX', jid,
                                {'mailpubsub#events': ['MessageRead', 'FlagsSet']}))
    assert iq_type(reply) == 'result'
    imap.fetch('2', '(BODY[])')
    wait_event(alice, 'MessageRead', 'INBOX')
    stack.cyrus.deliver('alice', make_message())
    no_event(alice, 'MessageNew', within=0.8)

    # deliver=false silences the subscription without ending it
    assert iq_type(alice.iq(options_iq(ALICE_SVC, 'INBOX', jid,
                                       {'pubsub#deliver': 'false'}))) == 'result'
    imap.store('1', '+FLAGS', '(\\Flagged)')
    no_event(alice, within=0.8)
    imap.logout()


def test_invalid_options(stack):
    alice = stack.client('alice')
    stack.cyrus.deliver('alice', make_message())
    wait_node(alice, 'INBOX')
    jid = 'alice@localhost'
    bad = [
        {'pubsub#subscription_depth': 'deep'},
        {'pubsub#deliver': 'maybe'},
        {'mailpubsub#events': ['MessageNew', 'NoSuchEvent']},
        {'pubsub#subscription_type': 'nodes'},
        {'unknown#field': '1'},
    ]
    for opts in bad:
        reply = alice.iq(subscribe_iq(ALICE_SVC, 'INBOX', jid, opts))
        assert error_of(reply) == ('modify', 'bad-request', 'invalid-options', None), opts
    subscribe(alice, 'INBOX')
    for opts in bad:
        reply = alice.iq(options_iq(ALICE_SVC, 'INBOX', jid, opts))
        assert error_of(reply) == ('modify', 'bad-request', 'invalid-options', None), opts
    # options of a subscription that does not exist: 6.3.4.2
    bob = stack.client('bob')
    reply = alice.iq(options_iq(ALICE_SVC, 'INBOX', 'bob@localhost'))
    assert error_of(reply)[:2] == ('auth', 'forbidden')
    del bob


def test_counts_match_status(stack):
    alice = stack.client('alice')
    stack.cyrus.deliver('alice', make_message())
    wait_node(alice, 'INBOX')
    subscribe(alice, 'INBOX')
    drain(alice)
    imap = stack.cyrus.imap('alice')
    imap.select('INBOX')
    steps = [
        lambda: stack.cyrus.deliver('alice', make_message()),
        lambda: stack.cyrus.deliver('alice', make_message()),
        lambda: imap.fetch('1', '(BODY[])'),
        lambda: imap.store('2', '+FLAGS', '(\\Seen)'),
        lambda: (imap.store('3', '+FLAGS', '(\\Deleted)'), imap.expunge()),
        lambda: stack.cyrus.deliver('alice', make_message()),
    ]
    for step in steps:
        step()
        alice.wait_message(lambda m: event_items(m) is not None, 10)
        drain(alice, 0.3)
    # the last item of the node (retrieved) carries what STATUS says
    reply = alice.iq(items_iq(ALICE_SVC, 'INBOX', max_items=1))
    last = next(reply.iter('{%s}mailbox-event' % NS_ITEM))
    messages, unseen = imap_status(stack, 'INBOX')
    assert (int(child_text(last, 'messages')), int(child_text(last, 'unseen'))) == \
        (messages, unseen) == (3, 1)
    imap.logout()


def test_counts_on_folder_events_and_resubscribe(stack):
    alice = stack.client('alice')
    imap = stack.cyrus.imap('alice')
    imap.create('INBOX/Work')
    wait_node(alice, 'INBOX/Work')
    stack.cyrus.deliver('alice', make_message(), mailbox='Work')
    stack.cyrus.deliver('alice', make_message(), mailbox='Work')
    subscribe(alice, 'INBOX/Work')
    drain(alice)
    # a rename carries no counts from Cyrus: they come from what we know
    imap.rename('INBOX/Work', 'INBOX/Done')
    _, ren = wait_event(alice, 'MailboxRename', 'INBOX/Done')
    assert (child_text(ren, 'messages'), child_text(ren, 'unseen')) == ('2', '2')
    # re-subscribing gives the last item, with the current counts
    jid = 'alice@localhost'
    assert iq_type(alice.iq(
        "<iq type='set' to='%s'><pubsub xmlns='%s'><unsubscribe node='INBOX/Done' jid='%s'/>"
        "</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB, jid))) == 'result'
    subscribe(alice, 'INBOX/Done')
    msg = alice.wait_message(lambda m: m.find('{%s}delay' % NS_DELAY) is not None, 10)
    _, items = event_items(msg)
    assert child_text(items[0][1], 'messages') == '2'
    imap.logout()


def test_status_fetched_when_unknown(stack):
    """A mailbox whose counts were never seen (it was filled while the
    daemon was away) is asked over IMAP when an event without counts names
    it, and a MailboxStatus item follows with the store's numbers."""
    alice = stack.client('alice')
    stack.stop_daemon()
    imap = stack.cyrus.imap('alice')
    imap.create('INBOX/Old')
    for _ in range(3):
        stack.cyrus.deliver('alice', make_message(), mailbox='Old')
    stack.start_daemon()
    imap.subscribe('INBOX/Old')             # MailboxSubscribe: no counts
    wait_node(alice, 'INBOX/Old')
    subscribe(alice, 'INBOX/Old', {'mailpubsub#events': ['vnd.mailpubsub.MailboxStatus']})
    _, st = wait_event(alice, 'vnd.mailpubsub.MailboxStatus', 'INBOX/Old')
    assert (child_text(st, 'messages'), child_text(st, 'unseen')) == ('3', '3')
    assert imap_status(stack, 'INBOX/Old') == (3, 3)
    imap.logout()


def test_heartbeat(stack):
    alice = stack.client('alice')
    stack.cyrus.deliver('alice', make_message())
    wait_node(alice, 'INBOX')
    subscribe(alice, 'INBOX', {'mailpubsub#heartbeat': 'true',
                               'mailpubsub#events': ['MessageNew']})
    drain(alice)
    beats = []
    for _ in range(2):
        msg, beat = wait_event(alice, 'vnd.mailpubsub.MailboxStatus', 'INBOX', timeout=5)
        beats.append(event_items(msg)[1][0][0])
        assert child_text(beat, 'messages') == '1'
        assert child_text(beat, 'unseen') == '1'
        assert beat.get('seq') is None
    assert beats[0] != beats[1] and all(b.startswith('hb-') for b in beats)
    # bob's subscription did not ask: no heartbeat for him


def test_discovery_from_imap_list(stack):
    from stack import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB_EVENT, disco_iq
    alice = stack.client('alice')
    bob = stack.client('bob')
    imap = stack.cyrus.imap('alice')
    imap.create('INBOX/Gone')
    wait_node(alice, 'INBOX/Gone')
    subscribe(alice, 'INBOX/Gone')
    drain(alice)
    stack.stop_daemon()
    # while nobody listens: two new folders, one deleted, rights for bob
    imap.create('INBOX/Quiet')
    imap.create('INBOX/Hidden')
    imap.delete('INBOX/Gone')
    imap.setacl('INBOX', 'bob', 'l')
    imap.setacl('INBOX/Quiet', 'bob', 'l')
    stack.start_daemon()
    # at start, maybe before the component connected: search this run's whole log
    stack.daemon.wait_log(r'discovery: alice: \d+ mailboxes listed, 1 gone', timeout=10,
                          from_start=True)

    def children(client, node=None):
        reply = client.iq(disco_iq(ALICE_SVC, NS_DISCO_ITEMS, node))
        return sorted(i.get('node') for i in reply.iter('{%s}item' % NS_DISCO_ITEMS))

    assert children(alice, 'INBOX') == ['INBOX/Hidden', 'INBOX/Quiet']
    # bob sees what he may list (l), nothing else
    assert children(bob) == ['INBOX']
    assert children(bob, 'INBOX') == ['INBOX/Quiet']
    assert error_of(bob.iq(disco_iq(ALICE_SVC, NS_DISCO_INFO, 'INBOX/Hidden')))[1] == \
        'item-not-found'
    # the folder deleted meanwhile is gone, and its subscriber was told
    assert error_of(alice.iq(disco_iq(ALICE_SVC, NS_DISCO_INFO, 'INBOX/Gone')))[1] == \
        'item-not-found'
    alice.wait_message(lambda m: m.find('{%s}event/{%s}delete' % (
        NS_PUBSUB_EVENT, NS_PUBSUB_EVENT)) is not None, 10)
    imap.logout()
