"""Discovery never delays authorization (issue 15 item 5), against a real
Cyrus and Prosody: the LIST sweep of every known account runs in the
background behind ACL questions, it is optional at start, and each
authorization decision is logged once.

The assertions are about order (what the daemon's log shows first), never
about how long anything took."""
import re
import sqlite3

import pytest

from harness import imap_quote, make_message, wait_until
from stack import (NS_DISCO_ITEMS, Stack, disco_iq, iq_type, service_jid,
                   subscribe_iq, wait_event)

# enough accounts that the sweep is still under way when a client asks
ACCOUNTS = 300
NS_DISCO_ITEM = '{%s}item' % NS_DISCO_ITEMS


def known_accounts(stack):
    con = sqlite3.connect(stack.db, timeout=30)
    try:
        return con.execute('SELECT count(DISTINCT account) FROM nodes').fetchone()[0]
    finally:
        con.close()


def create_accounts(stack, n):
    """n accounts (user/sNNN) over one admin connection; the running daemon
    learns them from their MailboxCreate events."""
    imap = stack.cyrus.admin_imap()
    try:
        for i in range(n):
            typ, data = imap.create(imap_quote(stack.cyrus.mailbox('s%03d' % i)))
            assert typ == 'OK', data
    finally:
        imap.logout()
    wait_until(lambda: known_accounts(stack) >= n + len(stack.users), 120,
               interval=0.5, what='%d accounts in the store' % n)


def subscribe(client, account, node):
    return client.iq(subscribe_iq(service_jid(account), node,
                                  client.jid.split('/')[0]), timeout=30)


def run_log(stack):
    """The log of the daemon's current run."""
    log = stack.daemon.log()
    return log[[m.start() for m in re.finditer(r'mailpubsubd \S+ started', log)][-1]:]


def line_index(log, regex):
    m = re.search(regex, log, re.M)
    assert m is not None, 'no line matching %r in the log' % regex
    return m.start()


@pytest.fixture
def stack(workdir):
    # LIST as the owner (as with a Dovecot master user): every LIST of the
    # sweep needs a session of its own, so a sweep that took sessions in
    # turn would hold the pool; four sessions make that quick to reach
    # zoe's account is listed last: no session of the sweep is hers yet
    s = Stack(workdir, users=('alice', 'bob', 'zoe'),
              config={'imap': {'list_as_owner': 'yes', 'max_sessions': '4',
                               'list_concurrency': '1'}})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_subscribe_answered_while_the_sweep_runs(stack):
    create_accounts(stack, ACCOUNTS)
    zoe = stack.client('zoe')
    stack.stop_daemon()
    stack.start_daemon()
    # the sweep is under way once it has listed its first account
    stack.daemon.wait_log(r'discovery: \S+: \d+ mailboxes listed, \d+ gone, \d+ new '
                          r'\(sweep\)', timeout=60)
    reply = subscribe(zoe, 'zoe', 'INBOX')
    assert iq_type(reply) == 'result'
    m = stack.daemon.wait_log(r'discovery: swept (\d+) accounts, (\d+) mailboxes '
                              r'\(\d+ new\), (\d+) gone in \S+ s'
                              r'(?:; LIST failed for (\d+))?', timeout=600)
    assert int(m.group(1)) == ACCOUNTS + len(stack.users)
    # a LIST the store did not answer in time (a loaded machine, 2 s
    # timeout) is counted and named, not silently taken for an empty account
    failed = int(m.group(4) or 0)
    assert failed < 20, m.group(0)
    assert int(m.group(2)) + failed >= ACCOUNTS + len(stack.users)
    assert len(re.findall(r'discovery: LIST \S+ failed', run_log(stack))) == failed
    assert m.group(3) == '0'
    log = run_log(stack)
    granted = line_index(log, r'authz: jid=zoe@localhost(?:/\S+)? identity=zoe '
                              r'mailbox=zoe/INBOX rights=\S+ -> granted \(imap ')
    swept = line_index(log, r'discovery: swept ')
    # answered before the sweep was over, with sweep LISTs on both sides
    assert granted < swept
    sweep_lines = [m.start() for m in re.finditer(r'\(sweep\)$', log, re.M)]
    assert len(sweep_lines) + failed == ACCOUNTS + len(stack.users)
    assert sweep_lines[0] < granted < sweep_lines[-1]
    # per-account lines at debug, the summary at info (a warning when
    # LISTs failed, as they may on a loaded machine)
    assert not re.search(r'\[info\]: discovery: \S+: \d+ mailboxes listed', log)
    assert re.search(r'\[%s\]: discovery: swept ' % ('warning' if failed else 'info'), log)


def test_first_contact_without_a_start_sweep(workdir):
    stack = Stack(workdir, users=('alice', 'bob', 'carol'),
                  config={'imap': {'list_at_start': 'no'}})
    try:
        stack.start()
        stack.client('alice')
        carol = stack.client('carol')
        stack.stop_daemon()
        # made while mailpubsubd was down: its MailboxCreate is lost
        stack.cyrus.create_mailbox(stack.cyrus.mailbox('dave'))
        stack.prosody.register('dave', 'secret-pw')
        stack.start_daemon()
        dave = stack.client('dave')

        def listed():
            reply = dave.iq(disco_iq(service_jid('dave'), NS_DISCO_ITEMS), timeout=30)
            assert iq_type(reply) == 'result'
            return [i.get('node') for i in reply.iter(NS_DISCO_ITEM)] == ['INBOX']
        # the first contact asks the store (at once, or for the next ask)
        wait_until(listed, 30, interval=0.5, what="dave's INBOX in disco#items")
        assert iq_type(subscribe(dave, 'dave', 'INBOX')) == 'result'
        log = run_log(stack)
        line_index(log, r'discovery: dave: 1 mailboxes listed, 0 gone, 1 new')
        # no sweep ran: nothing listed the accounts nobody asked about
        assert 'discovery: swept' not in log
        assert not re.search(r'discovery: (alice|bob|carol): ', log)
        assert iq_type(subscribe(carol, 'carol', 'INBOX')) == 'result'
    finally:
        stack.stop()


def test_one_log_line_per_decision_after_a_restart(workdir):
    stack = Stack(workdir)
    try:
        stack.start()
        alice = stack.client('alice')
        assert iq_type(subscribe(alice, 'alice', 'INBOX')) == 'result'
        stack.stop_daemon()
        stack.start_daemon()
        # nothing cached after a restart: the event's delivery and the
        # re-check of the subscriptions it triggers ask the same question
        stack.cyrus.deliver('alice', make_message(subject='after restart'))
        stack.daemon.wait_log(r'ingest: #\d+ MessageNew alice/INBOX', timeout=15)
        wait_event(alice, 'MessageNew', 'INBOX', timeout=15)
        log = run_log(stack)
        decisions = re.findall(r'authz: jid=alice@localhost(?:/\S+)? identity=alice '
                               r'mailbox=alice/INBOX rights=\S+ -> granted \((.*)\)$',
                               log, re.M)
        imap = [d for d in decisions if d.startswith('imap ')]
        assert len(imap) == 1, decisions
    finally:
        stack.stop()


def test_sweep_gives_up_while_the_store_is_down(workdir):
    stack = Stack(workdir)
    try:
        stack.start()
        create_accounts(stack, 30)
        stack.stop_daemon()
        stack.cyrus.stop()
        stack.start_daemon()
        # the first LISTs fail, the next ones fail fast (backing off): the
        # sweep stops early instead of running through every account
        wait_until(lambda: 'discovery: sweep given up' in run_log(stack), 60,
                   what='the sweep to give up')
        m = re.search(r'\[warning\]: discovery: sweep given up after (\d+) accounts, '
                      r'.* LISTs in a row could not be asked', run_log(stack))
        assert m is not None
        assert int(m.group(1)) < 30 + len(stack.users)
        assert 'discovery: swept' not in run_log(stack)
    finally:
        stack.stop()
