"""The IMAP client source (issue: IMAP client source).

Cyrus here sends no events at all (no event_notifier, no notifysocket) and
mailpubsubd binds no notify socket: everything alice's XMPP client receives
was synthesized by mailpubsubd from what it saw over IMAP (IDLE on INBOX,
polls of the rest every second, LIST diffs), with the same subscriber
assertions as the Cyrus-socket slice (test_slice.py)."""
import os
import queue
import time
import xml.etree.ElementTree as ET

import pytest

from harness import Daemon, make_message, wait_until
from stack import (NS_ITEM, Stack, child_text, daemon_binary, event_items,
                   iq_type, mailbox_of, service_jid, subscribe_iq,
                   validate_payload, wait_event)

ALICE_SVC = service_jid('alice')


class ImapSourceStack(Stack):
    """Cyrus with its event socket switched off; mailpubsubd watching alice
    and bob over IMAP."""

    def __init__(self, workdir, poll_interval=1, **kw):
        config = {
            # appended after the generated [cyrus] section: libinih hands
            # us both values and the later one wins (config.c set_value)
            'cyrus': {'notify_socket': ''},
            'imap_source': {'accounts': 'alice bob',
                            'poll_interval': str(poll_interval)},
        }
        super().__init__(workdir, config=config, **kw)
        # no notifier, no socket: Cyrus sends nothing
        self.cyrus.extra_config.update({
            'event_notifier': None, 'notifysocket': None,
            # without idled, Cyrus's IDLE checks the mailbox every
            # imapidlepoll seconds (default 60)
            'imapidlepoll': '1',
        })

    def start(self):
        super().start(start_daemon=False)
        self.start_daemon()
        return self

    def start_daemon(self):
        """Like Stack.start_daemon, without waiting for a notify socket:
        then until both accounts have their baseline."""
        self.daemon = Daemon(self.workdir, self.wrapper +
                             [daemon_binary(), '-f', '-c', self.conf])
        self.daemon.start()
        mark = self.daemon._pos      # where this run's log starts
        self.daemon.wait_log(r'component connected', timeout=15)
        wait_until(lambda: all(
            ('imap source: %s: watching INBOX' % u) in self.daemon.log()[mark:]
            for u in ('alice', 'bob')), 15, what='IMAP source watching')
        return self.daemon


def _stack(workdir, poll_interval):
    s = ImapSourceStack(workdir, poll_interval=poll_interval)
    try:
        s.start()
        wait_until(lambda: 'alice: 1 mailboxes taken as they are' in s.daemon.log(),
                   15, what='alice baseline')
        yield s
    finally:
        s.stop()


@pytest.fixture
def istack(workdir):
    """Polls every 30 s: what arrives sooner came through IDLE on INBOX."""
    yield from _stack(workdir, 30)


@pytest.fixture
def istack_polled(workdir):
    """Polls (LIST, other mailboxes) every second."""
    yield from _stack(workdir, 1)


def subscribe(client, node, options=None):
    bare = client.jid.split('/')[0]
    reply = client.iq(subscribe_iq(ALICE_SVC, node, bare, options))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')


def drain(client, quiet=2.0, timeout=20.0):
    """Every event item that arrives until nothing came for `quiet` s:
    [(type, node, payload)], each payload schema-checked."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = client.messages.get(timeout=quiet)
        except queue.Empty:
            break
        got = event_items(m)
        if got is None:
            continue
        node, items = got
        for _, payload in items:
            if payload is not None:
                validate_payload(payload)
                out.append((payload.get('type'), node, payload))
    return out


def mailbox_events(got):
    """Without the count items mailpubsubd adds where it knows no counts
    (src/publish/counts.c: the same with any source)."""
    return [g for g in got if g[0] != 'vnd.mailpubsub.MailboxStatus']


def flags_of(payload):
    return [f.text for f in payload.iter('{%s}flag' % NS_ITEM)]


def test_no_event_socket(istack):
    """The premise: nothing is bound where Cyrus would send, and Cyrus is
    not configured to send anything."""
    assert not os.path.exists(istack.notify_socket)
    conf = open(istack.cyrus.imapd_conf).read()
    assert 'notifysocket' not in conf and 'event_notifier' not in conf


def test_message_lifecycle(istack):
    alice = istack.client('alice')
    subscribe(alice, 'INBOX')

    t0 = time.monotonic()
    istack.cyrus.deliver('alice', make_message(subject='hello'))
    msg, new = wait_event(alice, 'MessageNew', 'INBOX')
    print('latency: LMTP delivery -> XMPP client %.0f ms (IMAP IDLE, Cyrus '
          'imapidlepoll 1 s)' % ((time.monotonic() - t0) * 1000))
    assert msg.get('type') == 'headline'
    assert msg.get('from') == ALICE_SVC
    box = mailbox_of(new)
    assert box.get('account') == 'alice' and box.get('node') == 'INBOX'
    assert box.get('uid') == '1'
    assert int(box.get('uidvalidity')) > 0
    assert child_text(new, 'messages') == '1'
    assert child_text(new, 'unseen') == '1'
    assert child_text(new, 'uidnext') == '2'
    assert int(child_text(new, 'modseq')) > 0
    _, items = event_items(msg)
    assert items[0][0] == new.get('seq')

    imap = istack.cyrus.imap('alice')
    imap.select('INBOX')
    t0 = time.monotonic()
    imap.fetch('1', '(BODY[])')
    _, read = wait_event(alice, 'MessageRead', 'INBOX')
    print('latency: IMAP FETCH (\\Seen) -> XMPP client %.0f ms'
          % ((time.monotonic() - t0) * 1000))
    assert child_text(read, 'unseen') == '0'
    assert child_text(read, 'messages') == '1'
    assert child_text(read, 'uidset') == '1'

    imap.store('1', '+FLAGS', '(\\Flagged)')
    _, fset = wait_event(alice, 'FlagsSet', 'INBOX')
    assert flags_of(fset) == ['\\Flagged']
    assert child_text(fset, 'uidset') == '1'

    imap.store('1', '-FLAGS', '(\\Flagged)')
    _, fclear = wait_event(alice, 'FlagsClear', 'INBOX')
    assert flags_of(fclear) == ['\\Flagged']

    imap.store('1', '+FLAGS', '(\\Deleted)')
    wait_event(alice, 'MessageTrash', 'INBOX')
    imap.expunge()
    _, gone = wait_event(alice, 'MessageExpunge', 'INBOX')
    assert child_text(gone, 'uidset') == '1'
    assert child_text(gone, 'messages') == '0'
    assert child_text(gone, 'unseen') == '0'
    imap.logout()
    # each change was reported once: nothing more is coming
    assert drain(alice, quiet=2.5) == []


def test_bob_is_watched_too(istack):
    bob = istack.client('bob')
    reply = bob.iq(subscribe_iq(service_jid('bob'), 'INBOX', 'bob@localhost'))
    assert iq_type(reply) == 'result'
    istack.cyrus.deliver('bob', make_message(subject='for bob'))
    _, new = wait_event(bob, 'MessageNew', 'INBOX')
    assert mailbox_of(new).get('account') == 'bob'
    assert child_text(new, 'messages') == '1'


def test_mailbox_create_rename_delete(istack_polled):
    istack = istack_polled
    alice = istack.client('alice')
    subscribe(alice, 'INBOX', {'pubsub#subscription_depth': 'all'})
    imap = istack.cyrus.imap('alice')

    assert imap.create('INBOX/Work')[0] == 'OK'
    assert imap.create('INBOX/Work/Sub')[0] == 'OK'
    _, created = wait_event(alice, 'MailboxCreate', 'INBOX/Work')
    assert mailbox_of(created).get('node') == 'INBOX/Work'
    wait_event(alice, 'MailboxCreate', 'INBOX/Work/Sub')

    assert imap.rename('INBOX/Work', 'INBOX/Projects')[0] == 'OK'
    got = mailbox_events(drain(alice, quiet=3.0))
    # the child moved with its parent: one rename, as Cyrus reports it
    assert [(t, node) for t, node, _ in got] == [
        ('MailboxRename', 'INBOX/Projects')], got
    ren = got[0][2]
    assert mailbox_of(ren).get('node') == 'INBOX/Projects'
    assert mailbox_of(ren, 'oldMailbox').get('node') == 'INBOX/Work'

    # a message in a polled (not IDLEd) folder
    assert imap.append('INBOX/Projects/Sub', None, None,
                       make_message(subject='polled'))[0] == 'OK'
    _, new = wait_event(alice, 'MessageNew', 'INBOX/Projects/Sub')
    assert mailbox_of(new).get('uid') == '1'
    assert child_text(new, 'messages') == '1'

    assert imap.delete('INBOX/Projects/Sub')[0] == 'OK'
    assert imap.delete('INBOX/Projects')[0] == 'OK'
    got = mailbox_events(drain(alice, quiet=3.0))
    assert sorted((t, node) for t, node, _ in got) == [
        ('MailboxDelete', 'INBOX/Projects'),
        ('MailboxDelete', 'INBOX/Projects/Sub')], got
    imap.logout()


def test_restart_resynchronises(istack):
    """Changes made while mailpubsubd is down are reported once it is back,
    exactly: nothing replayed, nothing missed."""
    alice = istack.client('alice')
    subscribe(alice, 'INBOX')
    istack.cyrus.deliver('alice', make_message(subject='before'))
    wait_event(alice, 'MessageNew', 'INBOX')
    assert drain(alice, quiet=1.5) == []

    istack.stop_daemon()
    istack.cyrus.deliver('alice', make_message(subject='while down 1'))
    istack.cyrus.deliver('alice', make_message(subject='while down 2'))
    imap = istack.cyrus.imap('alice')
    imap.select('INBOX')
    assert imap.uid('STORE', '1', '+FLAGS', '(\\Flagged)')[0] == 'OK'
    imap.logout()
    istack.start_daemon()

    got = drain(alice, quiet=3.0)
    summary = [(t, mailbox_of(p).get('uid'), child_text(p, 'uidset'), flags_of(p))
               for t, _, p in got]
    assert summary == [
        ('MessageNew', '2', None, []),
        ('MessageNew', '3', None, []),
        ('FlagsSet', None, '1', ['\\Flagged']),
    ], summary
    for _, _, p in got:
        assert child_text(p, 'messages') == '3'
        assert child_text(p, 'unseen') == '3'
        assert child_text(p, 'uidnext') == '4'

    # and it goes on live after the restart
    istack.cyrus.deliver('alice', make_message(subject='after'))
    _, new = wait_event(alice, 'MessageNew', 'INBOX')
    assert mailbox_of(new).get('uid') == '4'


def test_uidvalidity_change_is_a_resync(istack):
    """A mailbox recreated under the same name while mailpubsubd was down
    comes back as one resync item with its current counts, not as a replay
    of its messages."""
    alice = istack.client('alice')
    subscribe(alice, 'INBOX', {'pubsub#subscription_depth': 'all'})
    imap = istack.cyrus.imap('alice')
    assert imap.create('INBOX/Work')[0] == 'OK'
    istack.stop_daemon()
    istack.start_daemon()          # its first poll finds the new folder
    got = mailbox_events(drain(alice, quiet=2.0))
    assert [(t, n) for t, n, _ in got] == [('MailboxCreate', 'INBOX/Work')], got
    old_uidvalidity = mailbox_of(got[0][2]).get('uidvalidity')

    istack.stop_daemon()
    time.sleep(1.1)                # Cyrus's UIDVALIDITY comes from the clock
    assert imap.delete('INBOX/Work')[0] == 'OK'
    assert imap.create('INBOX/Work')[0] == 'OK'
    for i in range(2):
        assert imap.append('INBOX/Work', None, None,
                           make_message(subject='m%d' % i))[0] == 'OK'
    imap.logout()
    istack.start_daemon()
    got = drain(alice, quiet=2.0)
    assert [(t, n) for t, n, _ in got] == [
        ('vnd.mailpubsub.MailboxStatus', 'INBOX/Work')], got
    status = got[0][2]
    assert mailbox_of(status).get('uidvalidity') != old_uidvalidity
    assert child_text(status, 'messages') == '2'
    assert child_text(status, 'unseen') == '2'
    resync = [e.text for e in status.iter('{%s}extension' % NS_ITEM)
              if e.get('name') == 'vnd.mailpubsub.resync']
    assert resync and 'UIDVALIDITY changed' in resync[0], resync
