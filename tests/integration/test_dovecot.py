"""Dovecot as the mail store (issue: sources): events come from Dovecot's
push_notification Lua driver running examples/dovecot/mailpubsub.lua into
the generic JSON source; ACL lookups go to Dovecot's imap_acl through a
master-user login. The subscriber scenarios are those the Cyrus tests run:
deliver, read, flag, expunge, folder create/rename/delete, ACL grant and
revoke."""
import os
import time

import pytest

from dovecot import Dovecot
from harness import Daemon, Prosody, make_message, wait_until
from stack import (COMPONENT, NS_PUBSUB, NS_PUBSUB_EVENT, PASSWORD, Stack,
                   child_text, daemon_binary, error_of, iq_type, items_iq,
                   mailbox_of, service_jid, subscribe_iq, wait_event)

ALICE_SVC = service_jid('alice')
# without rights a mailbox is not there for the asker (no `l`)
HIDDEN = ('cancel', 'item-not-found', None, None)


class DovecotStack(Stack):
    """Prosody + Dovecot + mailpubsubd with the generic source only."""

    def __init__(self, workdir, users=('alice', 'bob')):
        self.workdir = workdir
        self.users = users
        self.json_socket = os.path.join(workdir, 'events.sock')
        self.dovecot = Dovecot(workdir, self.json_socket, users=users)
        self.mail_server = self.dovecot
        self.wrapper = []
        self.prosody = Prosody(workdir, component_domain=COMPONENT)
        self.conf = os.path.join(workdir, 'mailpubsub.conf')
        self.db = os.path.join(workdir, 'mailpubsub.db')
        self.daemon = None
        self.clients = []

    def write_config(self):
        with open(self.conf, 'w') as f:
            f.write(f"""[component]
host = 127.0.0.1
port = {self.prosody.component_port}
domain = {COMPONENT}
secret = {self.prosody.secret}

[json]
socket = {self.json_socket}
socket_mode = 0660
socket_group = mail
# Dovecot's imap and lmtp processes run as user mail here
allowed_users = mail

[store]
path = {self.db}
full_sync = no

[imap]
host = 127.0.0.1
port = {self.dovecot.imap_port}
tls = none
admin_user = {self.dovecot.master_user}
password = {self.dovecot.password}
other_inbox_named = yes
list_as_owner = yes
timeout_ms = 2000
# no ACL events from Dovecot: rights are asked again after a second
acl_cache_ttl = 1

[accounts]
jid_domains = localhost

[log]
level = debug
""")

    def start(self):
        self.prosody.start()
        for u in self.users:
            self.prosody.register(u, PASSWORD)
        self.dovecot.choose_ports()
        self.dovecot.start()
        self.write_config()
        self.daemon = Daemon(self.workdir, [daemon_binary(), '-f', '-c', self.conf])
        self.daemon.start()
        self.daemon.wait_log(r'component connected', timeout=15)
        wait_until(lambda: os.path.exists(self.json_socket), 5, what='json socket')
        return self


@pytest.fixture
def dstack(workdir):
    s = DovecotStack(workdir)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def subscribe(client, node, to=ALICE_SVC, options=None):
    reply = client.iq(subscribe_iq(to, node, client.jid.split('/')[0], options))
    if iq_type(reply) != 'result':
        return error_of(reply)
    return True


def wait_uid(client, etype, node, uid, timeout=10.0):
    """The payload of the etype notification for message uid on node
    (skipping the last item a subscription starts with)."""
    deadline = time.monotonic() + timeout
    while True:
        _, payload = wait_event(client, etype, node,
                                max(0.1, deadline - time.monotonic()))
        if mailbox_of(payload).get('uid') == str(uid):
            return payload


def node_known(client, node, to=ALICE_SVC):
    return iq_type(client.iq(items_iq(to, node))) == 'result'


def test_message_lifecycle(dstack):
    """LMTP delivery, read, flag, delete + expunge, each with counts."""
    d = dstack.dovecot
    alice = dstack.client('alice')
    d.deliver('alice', make_message(subject='first'))   # creates INBOX
    wait_until(lambda: node_known(alice, 'INBOX'), 10, what='INBOX node')
    assert subscribe(alice, 'INBOX') is True

    d.deliver('alice', make_message(subject='hello'))
    new = wait_uid(alice, 'MessageNew', 'INBOX', 2)
    box = mailbox_of(new)
    assert (box.get('account'), box.get('node'), box.get('uid')) == ('alice', 'INBOX', '2')
    assert int(box.get('uidvalidity')) > 0
    assert (child_text(new, 'messages'), child_text(new, 'unseen')) == ('2', '2')
    assert child_text(new, 'uidnext') == '3'

    imap = d.imap('alice')
    imap.select('INBOX')
    imap.uid('STORE', '2', '+FLAGS', '(\\Seen)')
    _, read = wait_event(alice, 'MessageRead', 'INBOX')
    assert child_text(read, 'uidset') == '2'
    assert child_text(read, 'unseen') == '1'
    imap.uid('STORE', '2', '+FLAGS', '(\\Flagged)')
    _, flags = wait_event(alice, 'FlagsSet', 'INBOX')
    assert [f.text for f in flags.iter('{urn:mailpubsub:event:0}flag')] == ['\\Flagged']
    imap.uid('STORE', '1', '+FLAGS', '(\\Deleted)')
    wait_event(alice, 'MessageTrash', 'INBOX')
    imap.expunge()
    _, gone = wait_event(alice, 'MessageExpunge', 'INBOX')
    assert child_text(gone, 'uidset') == '1'
    assert (child_text(gone, 'messages'), child_text(gone, 'unseen')) == ('1', '0')
    imap.logout()


def test_folders_create_rename_delete(dstack):
    """Folder events on a depth-all subscription; a subscription on a
    renamed folder follows it; delivery into user+Folder."""
    d = dstack.dovecot
    alice = dstack.client('alice')
    d.deliver('alice', make_message())
    wait_until(lambda: node_known(alice, 'INBOX'), 10, what='INBOX node')
    assert subscribe(alice, 'INBOX', options={'pubsub#subscription_depth': 'all'}) is True
    imap = d.imap('alice')
    assert imap.create('Projects')[0] == 'OK'
    _, created = wait_event(alice, 'MailboxCreate', 'INBOX/Projects')
    assert mailbox_of(created).get('node') == 'INBOX/Projects'
    assert subscribe(alice, 'INBOX/Projects') is True
    d.deliver('alice', make_message(subject='into projects'), mailbox='Projects')
    _, new = wait_event(alice, 'MessageNew', 'INBOX/Projects')
    assert mailbox_of(new).get('uid') == '1'

    assert imap.rename('Projects', 'Archive')[0] == 'OK'
    _, renamed = wait_event(alice, 'MailboxRename', 'INBOX/Archive')
    assert mailbox_of(renamed, 'oldMailbox').get('node') == 'INBOX/Projects'
    reply = alice.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><subscriptions/>"
                     "</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB))
    nodes = sorted(s.get('node') for s in reply.iter('{%s}subscription' % NS_PUBSUB))
    assert nodes == ['INBOX', 'INBOX/Archive']
    d.deliver('alice', make_message(subject='after rename'), mailbox='Archive')
    _, new = wait_event(alice, 'MessageNew', 'INBOX/Archive')

    assert imap.delete('Archive')[0] == 'OK'
    wait_event(alice, 'MailboxDelete', 'INBOX/Archive')
    wait_until(lambda: not node_known(alice, 'INBOX/Archive'), 10, what='node gone')
    imap.logout()


def test_acl_grant_and_revoke(dstack):
    """bob may subscribe to alice's folder only once she grants him "lr";
    after she revokes it his subscription ends at the next event (Dovecot
    sends no ACL events, so the rights are asked again once the cached
    answer is older than [imap] acl_cache_ttl)."""
    d = dstack.dovecot
    alice = dstack.client('alice')
    bob = dstack.client('bob')
    imap = d.imap('alice')
    assert imap.create('Team')[0] == 'OK'
    wait_until(lambda: node_known(alice, 'INBOX/Team'), 10, what='node')
    assert subscribe(bob, 'INBOX/Team') == HIDDEN
    assert subscribe(bob, 'INBOX') == HIDDEN

    assert imap.setacl('Team', 'bob', 'lr')[0] == 'OK'
    time.sleep(1.2)   # the denial above is cached for acl_cache_ttl
    assert subscribe(bob, 'INBOX/Team') is True
    d.deliver('alice', make_message(subject='for the team'), mailbox='Team')
    _, new = wait_event(bob, 'MessageNew', 'INBOX/Team')
    assert mailbox_of(new).get('account') == 'alice'

    assert imap.deleteacl('Team', 'bob')[0] == 'OK'
    time.sleep(1.2)
    d.deliver('alice', make_message(subject='secret'), mailbox='Team')
    msg = bob.wait_message(lambda m: m.find('{%s}event/{%s}subscription' % (
        NS_PUBSUB_EVENT, NS_PUBSUB_EVENT)) is not None, 10)
    sub = msg.find('{%s}event/{%s}subscription' % (NS_PUBSUB_EVENT, NS_PUBSUB_EVENT))
    assert (sub.get('subscription'), sub.get('node')) == ('none', 'INBOX/Team')
    with pytest.raises(TimeoutError):
        bob.wait_message(lambda m: m.find('{%s}event/{%s}items' % (
            NS_PUBSUB_EVENT, NS_PUBSUB_EVENT)) is not None, 1.5)
    assert subscribe(bob, 'INBOX/Team') == HIDDEN
    imap.logout()


def test_lua_script_reports_a_missing_daemon(dstack):
    """With mailpubsubd stopped the Lua script logs and drops (Dovecot
    keeps delivering); once it is back, events flow again."""
    d = dstack.dovecot
    alice = dstack.client('alice')
    d.deliver('alice', make_message())
    wait_until(lambda: node_known(alice, 'INBOX'), 10, what='INBOX node')
    assert subscribe(alice, 'INBOX') is True
    dstack.daemon.stop()
    t0 = time.monotonic()
    d.deliver('alice', make_message(subject='nobody listens'))
    assert time.monotonic() - t0 < 5
    wait_until(lambda: 'mailpubsub' in d.log(), 5, what='Lua script log line')
    dstack.daemon = Daemon(dstack.workdir, [daemon_binary(), '-f', '-c', dstack.conf])
    dstack.daemon.start()
    dstack.daemon.wait_log(r'component connected', timeout=15)
    d.deliver('alice', make_message(subject='back'))
    new = wait_uid(alice, 'MessageNew', 'INBOX', 3)
    assert child_text(new, 'messages') == '3'
