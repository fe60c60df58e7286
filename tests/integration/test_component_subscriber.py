"""A component subscribes (issue 15 item 3): a second XEP-0114 component on
the same Jabber server (slixmpp's ComponentXMPP), whose JID is a bare
domain mapped in [account_map] to an IMAP identity, is authorized by that
identity's rights exactly like a user: refused without rights, granted
once alice's ACL says so, events delivered to it, and revoked with a
notice when the ACL takes the rights away. Real Cyrus; Prosody and
ejabberd."""
import re
import xml.etree.ElementTree as ET

import pytest

from component_client import XmppComponent
from ejabberd import Ejabberd
from harness import make_message
from stack import (COMPONENT, NS_DISCO_INFO, NS_PUBSUB, NS_PUBSUB_EVENT, Stack,
                   disco_iq, error_of, event_items, is_event, iq_type,
                   items_iq, mailbox_of, service_jid, subscribe_iq,
                   validate_payload)

ALICE_SVC = service_jid('alice')
GATEWAY = 'mwi-gateway.localhost'
# no rights: the same answer as for a mailbox that does not exist
HIDDEN = ('cancel', 'item-not-found', None, None)


def make_stack(workdir, server):
    config = {'account_map': {GATEWAY: 'gateway'}}
    if server == 'ejabberd':
        return Stack(workdir, users=('alice',), config=config,
                     xmpp_server=Ejabberd(workdir, component_domain=COMPONENT,
                                          extra_components=(GATEWAY,)))
    s = Stack(workdir, users=('alice',), config=config)
    s.prosody.extra_config = 'Component "%s"\n    component_secret = "%s"\n' % (
        GATEWAY, s.prosody.secret)
    return s


@pytest.fixture(params=['prosody', 'ejabberd'])
def stack(request, workdir):
    s = make_stack(workdir, request.param)
    gateway = None
    try:
        s.start()
        gateway = XmppComponent().connect(GATEWAY, s.xmpp.secret,
                                          s.xmpp.component_port)
        s.gateway = gateway
        yield s
    finally:
        if gateway is not None:
            gateway.disconnect()
        s.stop()


def fresh_new(msg):
    """A MessageNew notification that is news, not the last item sent on
    subscribe (that one carries a delay)."""
    return is_event(msg, 'MessageNew', 'INBOX') and \
        msg.find('{urn:xmpp:delay}delay') is None


def acl_seen(stack, count):
    """Waits for the count-th AclChange on alice's INBOX since the start."""
    def seen():
        return len(re.findall(r'ingest: #\d+ AclChange alice/INBOX\b',
                              stack.daemon.log())) >= count
    import harness
    harness.wait_until(seen, 10, what='AclChange #%d' % count)


def test_component_subscribes_like_a_user(stack):
    gw = stack.gateway
    imap = stack.cyrus.imap('alice')
    stack.cyrus.deliver('alice', make_message(subject='before'))
    stack.daemon.wait_log(r'ingest: #\d+ MessageNew alice/INBOX', timeout=10,
                          from_start=True)

    # the identity "gateway" has no rights on alice's INBOX: refused
    reply = gw.iq(subscribe_iq(ALICE_SVC, 'INBOX', GATEWAY))
    assert error_of(reply) == HIDDEN, ET.tostring(reply, 'unicode')
    assert error_of(gw.iq(items_iq(ALICE_SVC, 'INBOX'))) == HIDDEN
    stack.daemon.wait_log(r'authz: jid=%s identity=gateway mailbox=alice/INBOX '
                          r'rights=\S* -> denied \(imap' % re.escape(GATEWAY),
                          from_start=True)

    # alice grants it over IMAP: the store's answer changes, so does ours
    assert imap.setacl('INBOX', 'gateway', 'lr')[0] == 'OK'
    acl_seen(stack, 1)
    reply = gw.iq(subscribe_iq(ALICE_SVC, 'INBOX', GATEWAY))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    sub = reply.find('{%s}pubsub/{%s}subscription' % (NS_PUBSUB, NS_PUBSUB))
    assert sub.get('subscription') == 'subscribed' and sub.get('jid') == GATEWAY
    stack.daemon.wait_log(r'authz: jid=%s identity=gateway mailbox=alice/INBOX '
                          r'rights=l?r?\S* -> granted \(imap' % re.escape(GATEWAY),
                          from_start=True)
    assert iq_type(gw.iq(items_iq(ALICE_SVC, 'INBOX'))) == 'result'
    assert iq_type(gw.iq(disco_iq(ALICE_SVC, NS_DISCO_INFO, 'INBOX'))) == 'result'

    # events are delivered to the component, from alice's service
    stack.cyrus.deliver('alice', make_message(subject='to the gateway'))
    msg = gw.wait_message(fresh_new, 10)
    assert msg.get('from') == ALICE_SVC and msg.get('to') == GATEWAY, \
        ET.tostring(msg, 'unicode')
    _, items = event_items(msg)
    payload = items[0][1]
    validate_payload(payload)
    assert mailbox_of(payload).get('account') == 'alice'
    assert mailbox_of(payload).get('uid') == '2'

    # alice takes the rights away: the subscription ends with a notice
    assert imap.deleteacl('INBOX', 'gateway')[0] == 'OK'
    acl_seen(stack, 2)
    notice = gw.wait_message(lambda m: m.find('{%s}event/{%s}subscription' % (
        NS_PUBSUB_EVENT, NS_PUBSUB_EVENT)) is not None, 10)
    state = notice.find('{%s}event/{%s}subscription' % (NS_PUBSUB_EVENT,
                                                        NS_PUBSUB_EVENT))
    assert state.get('subscription') == 'none' and state.get('jid') == GATEWAY
    assert state.get('node') == 'INBOX'

    # and nothing more reaches it, while alice's own subscriber still gets it
    alice = stack.client('alice')
    reply = alice.iq(subscribe_iq(ALICE_SVC, 'INBOX', 'alice@localhost'))
    assert iq_type(reply) == 'result'
    stack.cyrus.deliver('alice', make_message(subject='after revoke'))
    alice.wait_message(fresh_new, 10)
    try:
        stray = gw.wait_message(lambda m: is_event(m), 1.0)
    except TimeoutError:
        stray = None
    assert stray is None, ET.tostring(stray, 'unicode')
    assert error_of(gw.iq(items_iq(ALICE_SVC, 'INBOX'))) == HIDDEN
    imap.logout()
