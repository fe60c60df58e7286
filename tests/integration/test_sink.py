"""The journal sink (issue 16): every producer of events goes through one
place and reaches every listener the same way. An event the daemon makes
itself, the STATUS marker counts journals after a gap Cyrus caused,
reaches the firehose at once, with nothing else coming by to wake it, and
is counted as journaled like any other."""
import re
import signal
import sqlite3

from harness import make_message, wait_until
from stack import (COMPONENT, Stack, event_items, iq_type, items_iq, service_jid,
                   subscribe_iq, wait_event)

NODE = 'mailpubsub:firehose'
ALICE_SVC = service_jid('alice')


def next_firehose_item(client, etype, timeout=15.0):
    """(item id, payload) of the next firehose item of type etype."""
    while True:
        msg = client.wait_message(lambda m: (event_items(m) or (None,))[0] == NODE,
                                  timeout)
        for iid, payload in event_items(msg)[1]:
            if payload.get('type') == etype:
                return int(iid), payload


def journal_rows(db):
    con = sqlite3.connect(db)
    try:
        return dict(con.execute('SELECT source, count(*) FROM journal GROUP BY source'))
    finally:
        con.close()


def stats_journaled(daemon):
    """The journaled= counter of a SIGUSR1 stats line asked for now (the
    log also holds the stats a previous instance logged at its exit)."""
    pat = re.compile(r'stats: .* journaled=(\d+) ')
    n = len(pat.findall(daemon.log()))
    daemon.kill(signal.SIGUSR1)
    wait_until(lambda: len(pat.findall(daemon.log())) > n, 5, what='stats line')
    return int(pat.findall(daemon.log())[n])


def test_daemon_made_event_reaches_the_firehose_and_is_counted(workdir):
    s = Stack(workdir, users=('alice', 'archiver'),
              config={'firehose': {'subscribers': 'archiver@localhost:archive'}})
    s.start()
    try:
        alice = s.client('alice')
        arch = s.client('archiver')
        assert iq_type(arch.iq(subscribe_iq(COMPONENT, NODE, 'archiver@localhost'))) == 'result'
        s.cyrus.deliver('alice', make_message(subject='first'))
        wait_until(lambda: iq_type(alice.iq(items_iq(ALICE_SVC, 'INBOX'))) == 'result',
                   10, what='INBOX node')
        assert iq_type(alice.iq(subscribe_iq(ALICE_SVC, 'INBOX', 'alice@localhost', {
            'mailpubsub#events': ['MessageNew', 'vnd.mailpubsub.MailboxStatus']}))) == 'result'
        next_firehose_item(arch, 'MessageNew')
        # Cyrus loses two events while we are down: the next one shows the
        # gap, and the daemon journals a STATUS marker of its own
        s.stop_daemon()
        for _ in range(2):
            s.cyrus.deliver('alice', make_message())
        before = sum(journal_rows(s.db).values())
        s.start_daemon()
        s.cyrus.deliver('alice', make_message())
        wait_event(alice, 'MessageNew', 'INBOX')
        wait_event(alice, 'vnd.mailpubsub.MailboxStatus', 'INBOX')
        # the firehose hears of the marker as the publisher does: at its
        # commit, not when some later event kicks it (none comes here)
        seq, _ = next_firehose_item(arch, 'vnd.mailpubsub.MailboxStatus')
        con = sqlite3.connect(s.db)
        try:
            assert con.execute("SELECT source, type FROM journal WHERE seq = ?",
                               (seq,)).fetchone() == ('mailpubsub',
                                                      'vnd.mailpubsub.MailboxStatus')
        finally:
            con.close()
        # journaled since the restart (the Cyrus events and the marker) is
        # what the daemon counts: counts' events were once left out of it.
        # Asked while nothing else is journaled (Cyrus may report logins).
        for _ in range(5):
            total = sum(journal_rows(s.db).values())
            counted = stats_journaled(s.daemon)
            if sum(journal_rows(s.db).values()) == total:
                break
        assert counted == total - before
    finally:
        s.stop()
