"""Event sources beyond Cyrus's notify socket (issue: sources).

The generic source: newline-delimited RFC 5423 JSON on a Unix or TCP
stream socket, one acknowledgement line per event line, sent only once the
event is journaled.  Cyrus is the IMAP store for ACL lookups here; events
come from the test as a sender would write them."""
import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from harness import free_port, wait_until
from stack import (Stack, child_text, event_items, iq_type,
                   mailbox_of, service_jid, subscribe_iq, wait_event)

ALICE_SVC = service_jid('alice')
SECRET = 's3cret-for-tests'
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, '..', '..', 'pubsub-schemas',
                      'event-input.schema.json')


class JsonSender:
    """A sender of the generic source: one event per line, reads the ack."""

    def __init__(self, path=None, port=None, timeout=10.0):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(('127.0.0.1', port))
        self.sock.settimeout(timeout)
        self.rfile = self.sock.makefile('rb')

    def send_raw(self, data):
        self.sock.sendall(data)

    def ack(self):
        line = self.rfile.readline()
        if not line:
            return None
        return json.loads(line)

    def send(self, event):
        self.send_raw(json.dumps(event).encode() + b'\n')
        return self.ack()

    def close(self):
        self.rfile.close()
        self.sock.close()


def event(etype, mailbox='INBOX', uid=None, user='alice', uidvalidity=42,
          **params):
    """An RFC 5423 event with the owner in the URL's authority, as the
    generic source documents it."""
    uri = 'imap://%s@localhost/%s;UIDVALIDITY=%d' % (user, mailbox, uidvalidity)
    if uid is not None:
        uri += '/;UID=%d' % uid
    ev = {'event': etype, 'uri': uri, 'user': user,
          'timestamp': '2026-11-23T10:00:00.000+00:00'}
    ev.update(params)
    return ev


def try_subscribe(client, node, to=ALICE_SVC):
    bare = client.jid.split('/')[0]
    return iq_type(client.iq(subscribe_iq(to, node, bare))) == 'result'


def subscribe(client, node, to=ALICE_SVC, options=None):
    bare = client.jid.split('/')[0]
    reply = client.iq(subscribe_iq(to, node, bare, options))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')


def running_json_stack(workdir, config=None, xmpp_server=None, **json_options):
    """A running Stack with the generic source on a Unix socket
    (stack.json_socket) and on TCP (json_options added to [json]; config:
    other sections), stopped when the generator is."""
    path = os.path.join(workdir, 'events.sock')
    conf = {'socket': path, 'socket_mode': '0660', 'socket_group': '',
            'listen': '127.0.0.1:%d' % free_port(), 'secret': SECRET}
    conf.update(json_options)
    sections = dict(config or {})
    sections['json'] = dict(conf, **sections.get('json', {}))
    s = Stack(workdir, config=sections, xmpp_server=xmpp_server)
    s.json_socket = path
    try:
        s.start()
        wait_until(lambda: os.path.exists(path), 5, what='json socket')
        yield s
    finally:
        s.stop()


def message_new_payloads(client, count, timeout=20):
    """The payloads of the next count MessageNew notifications, in order."""
    got = []

    def got_all():
        try:
            msg = client.wait_message(lambda m: bool(event_items(m)[1]), 2)
        except Exception:
            return False
        got.extend(p for _, p in event_items(msg)[1] if p.get('type') == 'MessageNew')
        return len(got) >= count
    wait_until(got_all, timeout, what='%d MessageNew notifications' % count)
    return got


@pytest.fixture
def jstack(workdir):
    yield from running_json_stack(workdir)


def json_port(stack):
    return int(stack.extra_config['json']['listen'].rsplit(':', 1)[1])


def test_json_events_reach_subscribers(jstack):
    """MessageNew, FlagsSet and MessageExpunge sent as JSON reach alice's
    client with their counts; every ack carries a journal sequence."""
    alice = jstack.client('alice')
    subscribe(alice, 'INBOX')
    s = JsonSender(jstack.json_socket)
    a1 = s.send(event('MessageNew', uid=7, messages=3, uidnext=8,
                      **{'vnd.cmu.unseenMessages': 2, 'messageSize': 1234}))
    assert a1['ok'] is True and a1['seq'] > 0
    _, new = wait_event(alice, 'MessageNew', 'INBOX')
    box = mailbox_of(new)
    assert box.get('account') == 'alice' and box.get('uid') == '7'
    assert box.get('uidvalidity') == '42'
    assert child_text(new, 'messages') == '3'
    assert child_text(new, 'unseen') == '2'
    assert new.get('seq') == str(a1['seq'])

    a2 = s.send(event('FlagsSet', uidset='7', flagNames='\\Seen',
                      messages=3, **{'vnd.cmu.unseenMessages': 1}))
    assert a2['ok'] is True and a2['seq'] > a1['seq']
    _, flags = wait_event(alice, 'FlagsSet', 'INBOX')
    assert child_text(flags, 'unseen') == '1'
    # a personal name without the INBOX prefix (Dovecot's default
    # namespace, Cyrus's altnamespace) is the same node as Cyrus's
    # (the folder must exist in the store that answers MYRIGHTS)
    jstack.cyrus.create_mailbox(jstack.cyrus.mailbox('alice', 'Sent'))
    wait_until(lambda: try_subscribe(alice, 'INBOX/Sent'), 10,
               what='node INBOX/Sent')
    s.send(event('MessageAppend', mailbox='Sent', uid=1, messages=1))
    _, app = wait_event(alice, 'MessageAppend', 'INBOX/Sent')
    assert mailbox_of(app).get('node') == 'INBOX/Sent'
    s.close()


def test_quota_events_through_json(jstack):
    """Quota events, which Debian's Cyrus cannot send (it crashes), arrive
    through the generic source with their parameters."""
    alice = jstack.client('alice')
    # quota events are not in the default event filter: ask for them
    subscribe(alice, 'INBOX', options={'mailpubsub#events': [
        'QuotaExceed', 'QuotaWithin', 'QuotaChange']})
    s = JsonSender(jstack.json_socket)
    for etype in ('QuotaExceed', 'QuotaWithin', 'QuotaChange'):
        ack = s.send(event(etype, diskQuota=100, diskUsed=101, maxMessages=50))
        assert ack['ok'] is True, ack
        _, payload = wait_event(alice, etype, 'INBOX')
        assert child_text(payload, 'diskQuota') == '100'
        assert child_text(payload, 'diskUsed') == '101'
        assert child_text(payload, 'maxMessages') == '50'
    s.close()


def test_malformed_lines_get_errors_and_lose_nothing(jstack):
    """Bad lines between good ones: each bad line is answered with an error
    (and no retry flag), the connection stays usable, every good event is
    journaled and delivered in order."""
    alice = jstack.client('alice')
    subscribe(alice, 'INBOX')
    s = JsonSender(jstack.json_socket)
    bad = [b'not json', b'{"event":"NoSuchEvent","uri":"imap://alice@h/INBOX"}',
           b'{"event":"MessageNew"}', b'[1,2,3]',
           b'{"event":"MessageNew","uri":"imap://alice@h/INBOX//x"}',
           b'{"event":"MessageNew","uri":"imap://alice@h/%ZZ"}',
           b'\xff\xfe garbage', b'{"event":"MessageNew","uri":"imap://alice@h/INBOX",',
           ]
    batch = b''
    good_uids = []
    for i, b in enumerate(bad):
        uid = 100 + i
        good_uids.append(uid)
        batch += json.dumps(event('MessageNew', uid=uid, messages=i + 1)).encode() + b'\n'
        batch += b + b'\r\n'
    s.send_raw(batch)   # all at once: one read, one transaction
    acks = [s.ack() for _ in range(2 * len(bad))]
    oks = acks[0::2]
    errs = acks[1::2]
    assert all(a['ok'] is True for a in oks), oks
    assert [a['seq'] for a in oks] == sorted(a['seq'] for a in oks)
    for a in errs:
        assert a['ok'] is False and a['error'] and not a.get('retry'), a
    seen = [int(mailbox_of(p).get('uid'))
            for p in message_new_payloads(alice, len(good_uids))]
    assert seen == good_uids
    # still usable
    assert s.send(event('MessageExpunge', uidset='100'))['ok'] is True
    log = jstack.daemon.log()
    assert 'rejected line' in log
    s.close()


def test_ack_means_journaled(jstack):
    """Every acknowledged event survives a kill -9 that follows the ack at
    once: after the restart the subscriber gets all of them."""
    alice = jstack.client('alice')
    subscribe(alice, 'INBOX')
    s = JsonSender(jstack.json_socket)
    n = 200
    lines = b''.join(json.dumps(event('MessageNew', uid=1000 + i, messages=i + 1))
                     .encode() + b'\n' for i in range(n))
    s.send_raw(lines)
    acks = [s.ack() for _ in range(n)]
    assert all(a['ok'] for a in acks)
    jstack.daemon.kill(9)
    jstack.daemon.wait()
    s.close()
    jstack.daemon = None
    jstack.start_daemon()
    got = set()

    def all_seen():
        try:
            msg = alice.wait_message(lambda m: bool(event_items(m)[1]), 2)
        except Exception:
            return False
        for iid, p in event_items(msg)[1]:
            if p.get('type') == 'MessageNew':
                got.add(int(mailbox_of(p).get('uid')))
        return len(got) >= n
    wait_until(all_seen, 60, what='all acknowledged events')
    assert got == set(range(1000, 1000 + n))


def test_unix_peer_credentials(jstack):
    """A process of a user not in allowed_users is refused by peer
    credentials; the daemon's own user is accepted."""
    os.chmod(jstack.json_socket, 0o666)   # let nobody connect at all
    code = ('import socket,sys\n'
            's=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n'
            's.connect(sys.argv[1])\n'
            's.sendall(b\'{"event":"MessageNew","uri":"imap://alice@h/INBOX"}\\n\')\n'
            'sys.stdout.write(s.makefile().readline())\n')
    out = subprocess.run(['setpriv', '--reuid=nobody', '--regid=nogroup',
                          '--clear-groups', sys.executable, '-c', code,
                          jstack.json_socket],
                         capture_output=True, text=True, timeout=20)
    reply = json.loads(out.stdout)
    assert reply['ok'] is False
    assert 'allowed_users' in reply['error']
    jstack.daemon.wait_log(r'not in \[json\] allowed_users')
    s = JsonSender(jstack.json_socket)
    assert s.send(event('MailboxCreate', mailbox='New'))['ok'] is True
    s.close()


def test_tcp_needs_the_secret(jstack):
    """TCP senders must authenticate first; a wrong secret or an event
    before authenticating closes the connection with an error."""
    port = json_port(jstack)
    s = JsonSender(port=port)
    reply = s.send(event('MessageNew', uid=1))
    assert reply['ok'] is False and 'authentication' in reply['error']
    assert s.ack() is None   # closed
    s.close()
    s = JsonSender(port=port)
    assert s.send({'auth': 'wrong'})['ok'] is False
    s.close()
    alice = jstack.client('alice')
    subscribe(alice, 'INBOX')
    s = JsonSender(port=port)
    assert s.send({'auth': SECRET}) == {'ok': True}
    ack = s.send(event('MessageNew', uid=5, messages=1))
    assert ack['ok'] is True
    wait_event(alice, 'MessageNew', 'INBOX')
    s.close()
    assert SECRET not in jstack.daemon.log()


def test_line_too_long_is_refused(jstack):
    """A line beyond [json] max_line is refused and the connection closed;
    the daemon keeps serving other senders."""
    s = JsonSender(jstack.json_socket)
    try:
        s.send_raw(b'{"event":"MessageNew","x":"' + b'a' * (5 << 20))
    except OSError:
        pass   # the daemon may close before we finish writing
    reply = s.ack()
    assert reply is not None and 'max_line' in reply['error']
    s.close()
    s = JsonSender(jstack.json_socket)
    assert s.send(event('MailboxCreate', mailbox='Other'))['ok'] is True
    s.close()


def test_input_schema_accepts_what_we_send():
    """The JSON Schema in pubsub-schemas/ is valid JSON and describes the
    events this test module sends (checked with python3-jsonschema)."""
    import jsonschema
    with open(SCHEMA) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema)
    v.validate(event('MessageNew', uid=7, messages=3, uidnext=8,
                     **{'vnd.cmu.unseenMessages': 2}))
    v.validate(event('QuotaExceed', diskQuota=100, diskUsed=101))
    v.validate(event('MailboxRename', mailbox='New',
                     oldMailboxID='imap://alice@localhost/Old;UIDVALIDITY=1'))
    with pytest.raises(jsonschema.ValidationError):
        v.validate({'event': 'MessageNew'})
    with pytest.raises(jsonschema.ValidationError):
        v.validate({'event': 'NoSuchEvent', 'uri': 'imap://a@h/INBOX'})
