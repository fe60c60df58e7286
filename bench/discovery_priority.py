"""Benchmark: authorization while discovery sweeps a store with many
accounts (issue 15 item 5).

    /usr/bin/python3 bench/discovery_priority.py BUILD_DIR [--accounts N]
        [--daemon PATH] [--config SECTION.KEY=VALUE ...]

A private Cyrus with N accounts (default 1000; each has an INBOX and one
folder) and a private Prosody. mailpubsubd learns the accounts from their
MailboxCreate events and is restarted; at once eight users each subscribe
to their own INBOX, one after the other, while the start sweep (a LIST of
every known account) is under way: nothing is cached after a restart, so
each subscribe is a MYRIGHTS round trip on a new IMAP session. Once the
sweep is over, eight other users do the same: the same question with
nothing else going on. Printed for both: the subscribe round trip seen by
the client and the IMAP time of the decision in the daemon's log (first,
median, min, max), how long the sweep took and how many discovery lines
it logged at info level.

Try it with --config imap.list_as_owner=yes too (LIST as each account, as
with a Dovecot master user): every LIST then takes a session of its own.

--daemon runs another mailpubsubd binary (e.g. an older build, for a
before/after comparison); --config adds options to the daemon's config.
"""
import datetime
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests', 'integration'))

from harness import imap_quote, wait_until  # noqa: E402
from stack import Stack, iq_type, subscribe_iq, service_jid  # noqa: E402

SUBSCRIBERS = 8
FOLDER = 'Later'


def arg(name, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def extra_config():
    out = {}
    for i, a in enumerate(sys.argv):
        if a == '--config':
            key, _, value = sys.argv[i + 1].partition('=')
            section, _, name = key.partition('.')
            out.setdefault(section, {})[name] = value
    return out


def accounts_known(db):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute('SELECT count(DISTINCT account) FROM nodes').fetchone()[0]
    finally:
        con.close()


def create_accounts(stack, users, n):
    """CREATE user/uNNNN (and its one folder) for the accounts Stack did
    not create, over one admin connection."""
    imap = stack.cyrus.admin_imap()
    try:
        for i in range(n):
            name = 'u%04d' % i
            if name not in users:
                typ, data = imap.create(imap_quote(stack.cyrus.mailbox(name)))
                assert typ == 'OK', data
            typ, data = imap.create(imap_quote(stack.cyrus.mailbox(name, FOLDER)))
            assert typ == 'OK', data
    finally:
        imap.logout()


def subscribe_all(stack, clients, node):
    """Each client subscribes to node of its own account; returns the
    round trips in ms."""
    rtts = []
    for user, client in clients:
        t0 = time.monotonic()
        reply = client.iq(subscribe_iq(service_jid(user), node, client.jid.split('/')[0]),
                          timeout=120)
        rtts.append((time.monotonic() - t0) * 1000)
        assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    return rtts


def imap_ms(log, node, users):
    """The IMAP times of the users' decisions on node, from the log."""
    out = []
    for user in users:
        m = re.search(r'authz: jid=%s@localhost\S* identity=%s mailbox=%s/%s '
                      r'rights=\S+ -> granted \(imap ([0-9.]+) ms\)'
                      % (user, user, user, re.escape(node)), log)
        out.append(float(m.group(1)) if m else float('nan'))
    return out


def sweep_seconds(log):
    """From the daemon's first line to its last discovery line."""
    stamp = lambda line: datetime.datetime.strptime(  # noqa: E731
        line[:23], '%Y-%m-%dT%H:%M:%S.%f')
    lines = [l for l in log.splitlines() if re.match(r'\d{4}-\d\d-\d\dT', l)]
    disco = [l for l in lines if 'discovery: ' in l]
    if not disco:
        return float('nan')
    return (stamp(disco[-1]) - stamp(lines[0])).total_seconds()


def row(label, values):
    print('%-44s %9.1f %9.1f %9.1f %9.1f' % (label, values[0], statistics.median(values),
                                              min(values), max(values)))


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 and
                            not sys.argv[1].startswith('--') else 'build')
    n = int(arg('--accounts', '1000'))
    os.environ['MAILPUBSUBD'] = arg('--daemon', os.path.join(build, 'mailpubsubd'))
    work = tempfile.mkdtemp(prefix='mailpubsub-bench-')
    os.chmod(work, 0o755)
    # the first SUBSCRIBERS ask during the sweep, the others once it is
    # over: each a first question of its identity (a new IMAP session).
    # Their accounts come last in the sweep (it goes in byte order), as
    # nearly all accounts are for a sweep that has just begun: none of
    # them is being listed while they ask.
    users = tuple('u%04d' % i for i in range(n - 2 * SUBSCRIBERS, n))
    config = {'log': {'level': 'info'}, 'imap': {'timeout_ms': '10000'}}
    for section, values in extra_config().items():
        config.setdefault(section, {}).update(values)
    stack = Stack(work, users=users, config=config)
    try:
        stack.start()
        create_accounts(stack, users, n)
        wait_until(lambda: accounts_known(stack.db) >= n, 300, interval=0.5,
                   what='%d accounts in the store' % n)
        clients = [(u, stack.client(u)) for u in users]
        stack.stop_daemon()
        log_before = len(open(os.path.join(work, 'mailpubsubd.log')).read())
        stack.start_daemon()
        during = subscribe_all(stack, clients[:SUBSCRIBERS], 'INBOX')
        # the sweep is over: its summary line, or (builds before it had
        # one) a line for every account
        wait_until(lambda: 'discovery: swept' in stack.daemon.log()[log_before:] or
                   stack.daemon.log()[log_before:].count('mailboxes listed') >= n,
                   600, interval=0.5, what='the end of the sweep')
        idle = subscribe_all(stack, clients[SUBSCRIBERS:], 'INBOX')
        log = stack.daemon.log()[log_before:]
        print('\nsubscribe right after a restart, %d accounts known, %s' %
              (n, os.environ['MAILPUBSUBD']))
        print('%-44s %9s %9s %9s %9s' % ('', 'first ms', 'median ms', 'min ms',
                                          'max ms'))
        row('client round trip, during the start sweep', during)
        row('  of which IMAP MYRIGHTS (daemon log)',
            imap_ms(log, 'INBOX', users[:SUBSCRIBERS]))
        row('client round trip, daemon idle', idle)
        row('  of which IMAP MYRIGHTS (daemon log)',
            imap_ms(log, 'INBOX', users[SUBSCRIBERS:]))
        print('%-44s %9.1f' % ('start sweep: s from start to last discovery line',
                               sweep_seconds(log)))
        print('%-44s %9d' % ('discovery log lines at info level',
                             len(re.findall(r'\[info\]: discovery: ', log))))
    finally:
        stack.stop()
        if '--keep' in sys.argv:
            print('kept %s' % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
