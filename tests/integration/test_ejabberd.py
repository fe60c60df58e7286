"""The vertical slice behind ejabberd 23.01 instead of Prosody: real Cyrus
events reach a real XMPP client through a real ejabberd, mailpubsubd being
its XEP-0114 component, and Cyrus's ACL decides who may subscribe."""
import queue
import time
import xml.etree.ElementTree as ET

import pytest

from ejabberd import Ejabberd
from harness import make_message
from stack import (COMPONENT, NS_PUBSUB, Stack, child_text, error_of,
                   event_items, items_iq, iq_type, mailbox_of, service_jid,
                   subscribe_iq, wait_event)

ALICE_SVC = service_jid('alice')
# without rights a mailbox is not there for the asker (no `l`)
HIDDEN = ('cancel', 'item-not-found', None, None)


@pytest.fixture
def stack(workdir):
    s = Stack(workdir, users=('alice', 'carol'),
              xmpp_server=Ejabberd(workdir, component_domain=COMPONENT))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_slice_via_ejabberd(stack):
    alice = stack.client('alice')
    carol = stack.client('carol')

    # carol has no rights on user/alice: Cyrus says so, mailpubsubd hides it
    reply = carol.iq(subscribe_iq(ALICE_SVC, 'INBOX', carol.jid.split('/')[0]))
    assert error_of(reply) == HIDDEN, ET.tostring(reply, 'unicode')
    assert error_of(carol.iq(items_iq(ALICE_SVC, 'INBOX'))) == HIDDEN

    bare = alice.jid.split('/')[0]
    reply = alice.iq(subscribe_iq(ALICE_SVC, 'INBOX', bare))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    sub = reply.find('{%s}pubsub/{%s}subscription' % (NS_PUBSUB, NS_PUBSUB))
    assert sub.get('subscription') == 'subscribed' and sub.get('jid') == bare

    for n in (1, 2):
        t0 = time.monotonic()
        stack.cyrus.deliver('alice', make_message(subject='hello %d' % n))
        msg, new = wait_event(alice, 'MessageNew', 'INBOX')
        print('latency via ejabberd: LMTP session start -> client %.1f ms'
              % ((time.monotonic() - t0) * 1000))
        # ejabberd routes the component's stanza unchanged: a headline from
        # alice's pubsub service, which it neither stores nor redirects
        assert msg.get('type') == 'headline'
        assert msg.get('from') == ALICE_SVC
        assert msg.get('to').split('/')[0] == bare
        box = mailbox_of(new)
        assert box.get('account') == 'alice' and box.get('node') == 'INBOX'
        assert box.get('uid') == str(n)
        assert child_text(new, 'messages') == str(n)
        assert child_text(new, 'unseen') == str(n)
        assert child_text(new, 'uidnext') == str(n + 1)
        _, items = event_items(msg)
        assert items[0][0] == new.get('seq')

    # the refused subscriber got nothing, not even through ejabberd's own
    # pubsub or a stray broadcast
    try:
        stray = carol.messages.get(timeout=1.0)
    except queue.Empty:
        stray = None
    assert stray is None, ET.tostring(stray, 'unicode')
    assert 'improper-addressing' not in stack.daemon.log()
