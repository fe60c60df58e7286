"""The firehose for downstream subscribers (issue: archive): every event of
every account, in journal order, to the JIDs [firehose] subscribers names,
with the message retrieved over IMAP once per event (inline, or fetched in
chunks when large), retried while the store is away and recorded in the
item when it cannot be had. A subscriber that was away catches up with
RSM."""
import base64
import hashlib
import json
import os
import re
import socket
import time
import xml.etree.ElementTree as ET

import pytest

from harness import imap_date_instant, make_message, wait_until
from stack import (COMPONENT, NS_PUBSUB, Stack, error_of, event_items, iq_type,
                   mailbox_of, subscribe_iq, validate_payload)

NODE = 'mailpubsub:firehose'
NS_CONTENT = 'urn:mailpubsub:content:0'
NS_RSM = 'http://jabber.org/protocol/rsm'


def make_stack(workdir, **firehose):
    conf = {'subscribers': 'archiver@localhost:archive', 'inline_max': '4096',
            'fetch_attempts': '3'}
    conf.update(firehose)
    s = Stack(workdir, users=('alice', 'bob', 'archiver'),
              config={'firehose': conf,
                      'json': {'socket': os.path.join(workdir, 'events.sock'),
                               'socket_group': ''}})
    s.start()
    return s


@pytest.fixture
def fstack(workdir):
    s = make_stack(workdir)
    try:
        yield s
    finally:
        s.stop()


def subscribe(client, options=None):
    return client.iq(subscribe_iq(COMPONENT, NODE, client.jid.split('/')[0], options))


def next_item(client, etype, timeout=15.0):
    """(item id, payload) of the next firehose item of type etype."""
    deadline = time.monotonic() + timeout
    while True:
        msg = client.wait_message(lambda m: (event_items(m) or (None,))[0] == NODE,
                                  max(0.1, deadline - time.monotonic()))
        for iid, payload in event_items(msg)[1]:
            if payload.get('type') == etype:
                validate_payload(payload)   # content.rng included
                return int(iid), payload


def imap_bytes(stack, user, uid, mailbox='INBOX'):
    m = stack.cyrus.imap(user)
    try:
        m.select(mailbox, readonly=True)
        typ, data = m.uid('FETCH', str(uid), '(BODY.PEEK[] INTERNALDATE FLAGS)')
        assert typ == 'OK', data
        meta = data[0][0].decode()
        return data[0][1], meta
    finally:
        m.logout()


def fetch_all(client, seq, size, chunk=8192):
    out = b''
    while len(out) < size:
        reply = client.iq("<iq type='get' to='%s'><fetch xmlns='%s' item='%d' offset='%d'"
                          " length='%d'/></iq>" % (COMPONENT, NS_CONTENT, seq, len(out), chunk))
        assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
        el = reply.find('{%s}chunk' % NS_CONTENT)
        assert int(el.get('size')) == size and int(el.get('offset')) == len(out)
        part = base64.b64decode(el.text or '')
        assert part
        out += part
    return out


def test_only_listed_jids(fstack):
    """bob is not in [firehose] subscribers: the node does not exist for
    him, nor do its items or contents; the archiver subscribes."""
    bob = fstack.client('bob')
    assert error_of(subscribe(bob))[:2] == ('cancel', 'item-not-found')
    assert error_of(bob.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><items node='%s'/>"
                           "</pubsub></iq>" % (COMPONENT, NS_PUBSUB, NODE)))[1] == 'item-not-found'
    assert error_of(bob.iq("<iq type='get' to='%s'><fetch xmlns='%s' item='1'/></iq>"
                           % (COMPONENT, NS_CONTENT)))[1] == 'item-not-found'
    arch = fstack.client('archiver')
    reply = subscribe(arch)
    assert iq_type(reply) == 'result'
    sub = reply.find('{%s}pubsub/{%s}subscription' % (NS_PUBSUB, NS_PUBSUB))
    assert (sub.get('node'), sub.get('subscription')) == (NODE, 'subscribed')
    # every event, not only those an ordinary subscription would get
    fstack.cyrus.imap('bob').logout()
    next_item(arch, 'Login')


def test_content_inline_and_in_chunks(fstack):
    """A small message comes inline, a large one (over inline_max) is
    fetched in chunks; both byte-identical to IMAP, with sha256, flags and
    internal date; a headers-only subscriber gets the header section."""
    arch = fstack.client('archiver')
    assert iq_type(subscribe(arch)) == 'result'
    small = make_message(subject='small', body='x' * 500 + '\r\n')
    fstack.cyrus.deliver('alice', small)
    seq, payload = next_item(arch, 'MessageNew')
    c = payload.find('{%s}content' % NS_CONTENT)
    raw = base64.b64decode(c.text)
    imap_raw, meta = imap_bytes(fstack, 'alice', 1)
    assert raw == imap_raw
    assert c.get('sha256') == hashlib.sha256(raw).hexdigest()
    assert int(c.get('size')) == len(raw) and c.get('part') == 'full'
    idate = re.search(r'INTERNALDATE "([^"]+)"', meta).group(1)
    assert imap_date_instant(c.get('internaldate')) == imap_date_instant(idate)
    assert c.get('fetch') is None

    big = make_message(subject='big', body=('0123456789abcdef' * 64 + '\r\n') * 100)
    fstack.cyrus.deliver('alice', big)
    seq, payload = next_item(arch, 'MessageNew')
    c = payload.find('{%s}content' % NS_CONTENT)
    assert c.get('fetch') == 'true' and not (c.text or '').strip()
    data = fetch_all(arch, seq, int(c.get('size')))
    assert data == imap_bytes(fstack, 'alice', 2)[0]
    assert hashlib.sha256(data).hexdigest() == c.get('sha256')
    # \Seen untouched by the retrieval (BODY.PEEK)
    m = fstack.cyrus.imap('alice')
    m.select('INBOX', readonly=True)
    typ, data = m.uid('FETCH', '1:2', '(FLAGS)')
    m.logout()
    assert b'\\Seen' not in b' '.join(d for d in data if isinstance(d, bytes))

    # headers only
    reply = subscribe(arch, {'mailpubsub#content': 'headers'})
    assert iq_type(reply) == 'result'
    # (a new Message-ID: Cyrus drops duplicate deliveries)
    fstack.cyrus.deliver('alice', make_message(subject='small', body='x' * 500 + '\r\n'))
    seq, payload = next_item(arch, 'MessageNew')
    c = payload.find('{%s}content' % NS_CONTENT)
    assert c.get('part') == 'headers'
    head = base64.b64decode(c.text)
    assert head.endswith(b'\r\n\r\n') and b'Subject: small' in head and b'xxxx' not in head
    assert error_of(subscribe(arch, {'mailpubsub#content': 'everything'}))[1] == 'bad-request'


def send_json(path, event):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(json.dumps(event).encode() + b'\n')
    ack = json.loads(s.makefile().readline())
    s.close()
    return ack


def test_retrieval_retried_while_the_store_is_down(fstack):
    """The store goes away between an event and the retrieval of its
    message: the retrieval is retried with backoff and succeeds once the
    store is back; if it stays away the item says so (content-error
    unavailable) after [firehose] fetch_attempts; an expunged message gives
    content-error expunged. Nothing is dropped and the order holds."""
    arch = fstack.client('archiver')
    assert iq_type(subscribe(arch)) == 'result'
    fstack.cyrus.deliver('alice', make_message(subject='one'))
    seq1, _ = next_item(arch, 'MessageNew')
    raw, _ = imap_bytes(fstack, 'alice', 1)
    uidvalidity = None
    m = fstack.cyrus.imap('alice')
    uidvalidity = int(re.search(rb'UIDVALIDITY (\d+)', b' '.join(
        m.status('INBOX', '(UIDVALIDITY)')[1])).group(1))
    m.logout()
    sock = os.path.join(fstack.workdir, 'events.sock')
    uri = 'imap://alice@localhost/INBOX;UIDVALIDITY=%d/;UID=1' % uidvalidity

    # down, then back within the attempts (1 s + 2 s of backoff)
    fstack.cyrus.stop()
    assert send_json(sock, {'event': 'MessageAppend', 'uri': uri})['ok']
    fstack.daemon.wait_log(r'firehose: #\d+: retrieval failed \(attempt 1\)', timeout=15)
    fstack.cyrus.start()
    seq2, payload = next_item(arch, 'MessageAppend', timeout=30)
    c = payload.find('{%s}content' % NS_CONTENT)
    assert c is not None and base64.b64decode(c.text) == raw
    assert seq2 > seq1

    # down for good: recorded in the item, and what follows still flows
    fstack.cyrus.stop()
    assert send_json(sock, {'event': 'MessageAppend', 'uri': uri})['ok']
    assert send_json(sock, {'event': 'MailboxCreate',
                            'uri': 'imap://alice@localhost/After;UIDVALIDITY=1'})['ok']
    seq3, payload = next_item(arch, 'MessageAppend', timeout=30)
    err = payload.find('{%s}content-error' % NS_CONTENT)
    assert (err.get('reason'), err.get('attempts')) == ('unavailable', '3')
    seq4, _ = next_item(arch, 'MailboxCreate', timeout=10)
    assert seq4 == seq3 + 1
    fstack.cyrus.start()

    # a message that is gone: final at once
    assert send_json(sock, {'event': 'MessageNew', 'uri': uri.replace('UID=1', 'UID=99')})['ok']
    _, payload = next_item(arch, 'MessageNew', timeout=20)
    err = payload.find('{%s}content-error' % NS_CONTENT)
    assert err.get('reason') == 'expunged'


def test_catch_up_with_rsm(fstack):
    """Items after a sequence number, in order, with content, paged."""
    arch = fstack.client('archiver')
    assert iq_type(subscribe(arch)) == 'result'
    fstack.cyrus.deliver('alice', make_message(subject='first'))
    first, _ = next_item(arch, 'MessageNew')
    for i in range(4):
        fstack.cyrus.deliver('alice', make_message(subject='n%d' % i))
    for i in range(4):
        next_item(arch, 'MessageNew')
    got, after = [], first
    while True:
        reply = arch.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><items node='%s'/>"
                        "<set xmlns='%s'><after>%d</after><max>3</max></set></pubsub></iq>"
                        % (COMPONENT, NS_PUBSUB, NODE, NS_RSM, after))
        assert iq_type(reply) == 'result'
        items = reply.findall('{%s}pubsub/{%s}items/{%s}item' % (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB))
        ids = [int(i.get('id')) for i in items]
        got += ids
        if len(ids) < 3:
            break
        rsm = reply.find('{%s}pubsub/{%s}set' % (NS_PUBSUB, NS_RSM))
        assert int(rsm.findtext('{%s}last' % NS_RSM)) == ids[-1]
        after = ids[-1]
        for it in items:
            p = it.find('{urn:mailpubsub:event:0}mailbox-event')
            if p.get('type') == 'MessageNew':
                assert p.find('{%s}content' % NS_CONTENT) is not None
    assert got == list(range(first + 1, got[-1] + 1))
    assert len([g for g in got]) >= 4


def test_accounts_filter_and_prev(workdir):
    """With [firehose] accounts = alice, bob's events stay off the firehose;
    ids then skip them and each item's prev names the previous item, live
    and in catch-up pages, so that a subscriber tells that from a gap."""
    s = make_stack(workdir, accounts='alice')
    try:
        arch = s.client('archiver')
        assert iq_type(subscribe(arch)) == 'result'
        s.cyrus.deliver('alice', make_message(subject='a1'))
        first, p1 = next_item(arch, 'MessageNew')
        s.cyrus.deliver('bob', make_message(subject='b1'))
        s.cyrus.deliver('alice', make_message(subject='a2'))
        second, p2 = next_item(arch, 'MessageNew')
        assert mailbox_of(p1).get('account') == mailbox_of(p2).get('account') == 'alice'
        assert second > first + 1                 # bob's events in between
        # what came between alice's two deliveries on the firehose
        reply = arch.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><items node='%s'/>"
                        "<set xmlns='%s'><after>%d</after><max>50</max></set></pubsub></iq>"
                        % (COMPONENT, NS_PUBSUB, NODE, NS_RSM, first))
        events = [it.find('{urn:mailpubsub:event:0}mailbox-event') for it in reply.findall(
            '{%s}pubsub/{%s}items/{%s}item' % (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB))]
        chain = [first] + [int(e.get('seq')) for e in events]
        assert [int(e.get('prev')) for e in events] == chain[:-1]
        assert second in chain
        for e in events:
            box = mailbox_of(e)
            assert box is None or box.get('account') == 'alice', ET.tostring(e, 'unicode')
        assert int(p2.get('prev')) == chain[chain.index(second) - 1]
    finally:
        s.stop()


def caught_up_item(client, after, etype):
    """The payload of the first item of type etype after sequence number
    after, from a catch-up page, once its content was retrieved (None
    before)."""
    reply = client.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><items node='%s'/>"
                      "<set xmlns='%s'><after>%d</after><max>20</max></set></pubsub></iq>"
                      % (COMPONENT, NS_PUBSUB, NODE, NS_RSM, after))
    if iq_type(reply) == 'error' and error_of(reply)[1] == 'remote-server-timeout':
        return None   # Prosody is back, the component not yet
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    for it in reply.findall('{%s}pubsub/{%s}items/{%s}item' % (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB)):
        p = it.find('{urn:mailpubsub:event:0}mailbox-event')
        if p is not None and p.get('type') == etype and \
                p.find('{%s}content' % NS_CONTENT) is not None:
            validate_payload(p)
            return p
    return None


def test_content_follows_a_rename(fstack):
    """A folder renamed before its message is retrieved (here while the
    Jabber server is away, so the firehose waits): the retrieval finds it
    under the new name by its UIDVALIDITY instead of calling it gone."""
    arch = fstack.client('archiver')
    assert iq_type(subscribe(arch)) == 'result'
    old = fstack.cyrus.mailbox('alice', 'Old')
    fstack.cyrus.create_mailbox(old, lmtp_post=True)
    created, _ = next_item(arch, 'MailboxCreate')
    fstack.prosody.stop()
    fstack.daemon.wait_log(r'component disconnected', timeout=15)
    fstack.clients.remove(arch)
    fstack.cyrus.deliver('alice', make_message(subject='moved away'), mailbox='Old')
    m = fstack.cyrus.imap('alice')
    assert m.rename('INBOX/Old', 'INBOX/New')[0] == 'OK'
    m.logout()
    fstack.daemon.wait_log(r'ingest: #\d+ MailboxRename alice/INBOX/New', timeout=10)
    fstack.prosody.start()
    arch = fstack.client('archiver')
    # the live item may go out before this client is back online (a
    # headline to an offline JID is dropped): read it the way an archiver
    # that was away does, by catching up after the last item it had
    payload = wait_until(lambda: caught_up_item(arch, created, 'MessageNew'), 30,
                         interval=0.5, what='the MessageNew in a catch-up page')
    assert mailbox_of(payload).get('node') == 'INBOX/Old'
    c = payload.find('{%s}content' % NS_CONTENT)
    assert c is not None, ET.tostring(payload, 'unicode')
    raw, _ = imap_bytes(fstack, 'alice', 1, mailbox='INBOX/New')
    assert base64.b64decode(c.text) == raw


def test_fetch_honours_accounts(workdir):
    """Content of an account [firehose] accounts leaves out is not the
    firehose's to give, even while the store still holds it (retrieved
    when bob was on the firehose, before the list became alice): bob's
    fetch is item-not-found, alice's is served."""
    s = make_stack(workdir)
    try:
        arch = s.client('archiver')
        assert iq_type(subscribe(arch)) == 'result'
        sizes = {}
        for user in ('bob', 'alice'):
            s.cyrus.deliver(user, make_message(subject='for %s' % user))
            seq, payload = next_item(arch, 'MessageNew')
            assert mailbox_of(payload).get('account') == user
            sizes[user] = seq, int(payload.find('{%s}content' % NS_CONTENT).get('size'))
        bob_seq, bob_size = sizes['bob']
        alice_seq, alice_size = sizes['alice']
        # served while bob is on the firehose
        assert fetch_all(arch, bob_seq, bob_size) == imap_bytes(s, 'bob', 1)[0]

        s.stop_daemon()
        s.extra_config['firehose']['accounts'] = 'alice'
        s.write_config()
        s.start_daemon()
        reply = arch.iq("<iq type='get' to='%s'><fetch xmlns='%s' item='%d'/></iq>"
                        % (COMPONENT, NS_CONTENT, bob_seq))
        assert error_of(reply)[1] == 'item-not-found', ET.tostring(reply, 'unicode')
        s.daemon.wait_log(r'firehose: archiver@localhost/\S+ fetched item %d, not on the '
                          r'firehose' % bob_seq)
        assert fetch_all(arch, alice_seq, alice_size) == imap_bytes(s, 'alice', 1)[0]
    finally:
        s.stop()
