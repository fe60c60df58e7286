"""Tests of the integration harness itself (no mailpubsub code involved)."""

import os
import signal
import socket
import sys

import pytest

import harness
from harness import NS_CLIENT, imap_quote, make_message


def names(events):
    return [e['event'] for e in events]


def test_free_port():
    p = harness.free_port()
    assert 1024 <= p < 65536
    with socket.socket() as s:
        s.bind(('127.0.0.1', p))


def test_imap_utf7_roundtrip():
    for name in ('INBOX', 'My Folder', 'Entwürfe', '日本語', 'A&B', 'Ünïcode & Co',
                 '~peter/mail/台北/日本語'):
        enc = harness.imap_utf7_encode(name)
        assert enc.isascii()
        assert harness.imap_utf7_decode(enc) == name
    # RFC 3501 5.1.3 example
    assert harness.imap_utf7_encode('~peter/mail/台北/日本語') == \
        '~peter/mail/&U,BTFw-/&ZeVnLIqe-'
    assert harness.imap_utf7_encode('A&B') == 'A&-B'


def test_cyrus_starts_and_stops_cleanly(workdir, notify):
    c = harness.Cyrus(workdir, notify.path)
    c.start()
    try:
        assert c.imap_port and c.lmtp_port and c.imap_port != c.lmtp_port
        assert harness.pid_alive(c.pid)
        assert c.leftover_pids()            # master + children
        m = c.imap('alice', 'any password works')
        assert m.noop()[0] == 'OK'
        m.logout()
        with open(c.imapd_conf) as f:
            conf = f.read()
        assert 'notifysocket: %s\n' % notify.path in conf
        with open(c.cyrus_conf) as f:
            for line in f:
                if 'cmd=' in line:
                    assert '-C ' + c.imapd_conf in line
    finally:
        c.stop()
    assert c.leftover_pids() == []
    c.stop()                                 # idempotent


def test_notify_datagram_format(cyrus, notify):
    cyrus.create_user('alice')
    d = notify.recv(5)
    assert d is not None
    fields = d.split(b'\0')
    assert fields[:6] == [b'pubsub', b'EVENT', b'', b'', b'', b'0']
    assert fields[-1] == b'' and len(fields) == 8    # JSON is NUL terminated
    ev = harness.parse_notify(d)['event']
    assert ev['event'] == 'Login' and ev['user'] == 'admin'


def test_lmtp_delivery_events(cyrus, notify):
    cyrus.create_user('alice')
    cyrus.create_mailbox(cyrus.mailbox('alice', 'Sub'), lmtp_post=True)
    cyrus.create_mailbox(cyrus.mailbox('alice', 'Closed'))
    notify.drain(0.3)

    cyrus.deliver('alice', make_message('one'))
    evs = notify.wait_event(lambda e: e['event'] == 'MessageNew')
    new = evs[-1]
    assert new['uri'].startswith('imap://localhost/user/alice;UIDVALIDITY=')
    assert new['uri'].endswith('/;UID=1')
    assert new['user'] == 'alice' and new['service'] == 'lmtp'

    cyrus.deliver('alice', make_message('two'), mailbox='Sub', via='unix')
    new = notify.wait_event(lambda e: e['event'] == 'MessageNew')[-1]
    assert new['uri'].startswith('imap://localhost/user/alice/Sub;')
    assert new['user'] == ''                 # LMTP into a subfolder

    # no "p" right for anyone: Cyrus silently falls back to INBOX
    assert not cyrus.anyone_can_post(cyrus.mailbox('alice', 'Closed'))
    cyrus.deliver('alice', make_message('three'), mailbox='Closed',
                  grant_post=False)
    new = notify.wait_event(lambda e: e['event'] == 'MessageNew')[-1]
    assert new['uri'].startswith('imap://localhost/user/alice;')
    assert new['uri'].endswith('/;UID=2')

    # default grant_post=True: deliver() adds "anyone +p" first
    cyrus.deliver('alice', make_message('four'), mailbox='Closed')
    evs = notify.wait_event(lambda e: e['event'] == 'MessageNew')
    assert evs[-1]['uri'].startswith('imap://localhost/user/alice/Closed;')
    acl = [e for e in evs if e['event'] == 'AclChange']
    assert [(e['aclSubject'], e['aclRights']) for e in acl] == [('anyone', 'p')]
    assert cyrus.anyone_can_post(cyrus.mailbox('alice', 'Closed'))


def test_imap_session_events(cyrus, notify):
    cyrus.create_user('alice')
    cyrus.deliver('alice', make_message('a'))
    cyrus.deliver('alice', make_message('b'))
    notify.drain(0.3)

    m = cyrus.imap('alice')
    assert m.select('INBOX')[0] == 'OK'
    assert m.fetch('1', '(BODY[])')[0] == 'OK'
    assert m.store('1', '+FLAGS', '(\\Flagged)')[0] == 'OK'
    assert m.store('2', '+FLAGS', '(\\Deleted)')[0] == 'OK'
    assert m.expunge()[0] == 'OK'
    assert m.create(imap_quote('INBOX/Dir/Child'))[0] == 'OK'
    assert m.rename(imap_quote('INBOX/Dir'), imap_quote('INBOX/Ordner ü'))[0] == 'OK'
    assert m.delete(imap_quote('INBOX/Ordner ü/Child'))[0] == 'OK'
    m.logout()
    evs = notify.events(0.5)
    got = [e for e in names(evs) if e != 'MailboxModseq']
    assert got == ['Login', 'MessageRead', 'FlagsSet', 'MessageTrash',
                   'MessageExpunge', 'MailboxCreate', 'MailboxCreate',
                   'MailboxRename', 'MailboxDelete', 'Logout']
    by = {e['event']: e for e in evs}
    assert by['FlagsSet']['flagNames'] == '\\Flagged'
    assert by['MessageExpunge']['uidset'] == '2'
    assert by['MailboxRename']['oldMailboxID'].startswith(
        'imap://localhost/user/alice/Dir;UIDVALIDITY=')
    assert by['MailboxRename']['uri'].startswith(
        'imap://localhost/user/alice/Ordner%20%C3%BC;')
    assert by['MailboxDelete']['uri'].startswith(
        'imap://localhost/user/alice/Ordner%20%C3%BC/Child;')


def test_cyrus_dot_separator(cyrus_dot, notify):
    c = cyrus_dot
    assert c.sep == '.'
    c.create_user('bob')
    c.create_mailbox(c.mailbox('bob', 'Sub'), lmtp_post=True)
    c.deliver('bob', make_message(), mailbox='Sub')
    evs = notify.wait_event(lambda e: e['event'] == 'MessageNew')
    assert evs[-1]['uri'].startswith('imap://localhost/user.bob.Sub;')
    creates = [e for e in evs if e['event'] == 'MailboxCreate']
    assert creates[0]['uri'].startswith('imap://localhost/user.bob;')


def test_setacl_helper(cyrus, notify):
    cyrus.create_user('alice')
    cyrus.setacl(cyrus.mailbox('alice'), 'bob', 'lr')
    ev = notify.wait_event(lambda e: e['event'] == 'AclChange')[-1]
    assert (ev['aclSubject'], ev['aclRights']) == ('bob', 'lr')
    m = cyrus.imap('bob')
    typ, data = m.myrights(imap_quote('user/alice'))
    assert typ == 'OK' and b'lr' in data[0]
    m.logout()


def test_prosody_two_users_exchange_message(prosody, xmpp_clients):
    prosody.register('alice', 'pa')
    prosody.register('bob', 'pb')
    a = xmpp_clients('alice@localhost', 'pa', prosody.c2s_port)
    b = xmpp_clients('bob@localhost', 'pb', prosody.c2s_port)
    assert a.jid.startswith('alice@localhost/')
    a.send_message('bob@localhost', 'hello bob')
    m = b.wait_message(lambda m: m.find('{%s}body' % NS_CLIENT) is not None, 10)
    assert m.find('{%s}body' % NS_CLIENT).text == 'hello bob'
    assert m.get('from') == a.jid
    b.send('<message to="%s" type="headline"><x xmlns="urn:test">raw</x>'
           '</message>' % a.jid)
    m = a.wait_message(lambda m: m.find('{urn:test}x') is not None, 10)
    assert m.find('{urn:test}x').text == 'raw'


def test_xmpp_iq_result_and_error(prosody, xmpp_clients):
    prosody.register('alice', 'pa')
    a = xmpp_clients('alice@localhost', 'pa', prosody.c2s_port)
    r = a.iq("<iq type='get' to='localhost'>"
             "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert r.tag == '{%s}iq' % NS_CLIENT and r.get('type') == 'result'
    assert r.find('{%s}query' % harness.NS_DISCO_INFO) is not None
    # the component is configured but not connected: an error, not a raise
    r = a.iq("<iq type='get' to='%s'>"
             "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
             % prosody.component_domain)
    assert r.get('type') == 'error'
    assert r.find('{%s}error' % NS_CLIENT) is not None


def test_xmpp_bad_password(prosody):
    prosody.register('alice', 'pa')
    c = harness.XmppClient()
    with pytest.raises(RuntimeError):
        c.connect('alice@localhost', 'wrong', '127.0.0.1', prosody.c2s_port,
                  timeout=5)
    c.disconnect()


def test_daemon_wrapper(workdir, daemons):
    script = ('import signal, sys, time\n'
              'signal.signal(signal.SIGHUP, lambda *a: print("got HUP", flush=True))\n'
              'print("ready", flush=True)\n'
              'sys.stderr.write("on stderr\\n"); sys.stderr.flush()\n'
              'while True: time.sleep(0.1)\n')
    d = daemons(workdir, [sys.executable, '-c', script], name='fake')
    assert d.wait_log(r'^ready$|ready', 10)
    assert d.wait_log('on stderr', 10)
    d.kill(signal.SIGHUP)
    assert d.wait_log('got HUP', 10)
    with pytest.raises(TimeoutError):
        d.wait_log('never printed', 0.3)
    assert d.running()
    assert d.stop() == -signal.SIGTERM
    assert os.path.exists(os.path.join(workdir, 'fake.log'))
