"""The archive example over the message bus (issue 17 "Consumers"): a real
Cyrus and mailpubsubd put every event on a private RabbitMQ ([bus] content
= full); two `mpsarchive.py bus` workers on one queue share the load and
one archive, each message stored once, acknowledged only after it is
stored (kill -9 of a worker loses nothing: the broker gives what it held
to the other), and restore works exactly as from the firehose."""
import os
import signal
import threading

import pytest

from harness import Daemon, wait_until
from rabbitmq import RabbitMQ, USER as BUS_USER, wait_ready
from stack import Stack
from test_archive import (PROG, PYTHON, Archiver, fetch_box, msg_8bit, msg_ascii,
                          msg_recipients, sha, sized)

QUEUE = '/queue/mailpubsub-archive'


@pytest.fixture
def bstack(workdir):
    broker = RabbitMQ(workdir)
    broker.start()
    creds = os.path.join(workdir, 'bus-credentials')
    s = None
    try:
        wait_ready(broker)
        with open(creds, 'w') as f:
            f.write('%s\n%s\n' % (BUS_USER, broker.password))
        os.chmod(creds, 0o600)
        s = Stack(workdir, users=('alice', 'bob'), config={'bus': {
            'urls': broker.url, 'credentials_file': creds, 'address': QUEUE,
            'instance': 'b1', 'content': 'full', 'content_max': 4 * 1024 * 1024}})
        s.broker = broker
        s.workers = []
        s.start()
        yield s
    finally:
        if s is not None:
            for w in s.workers:
                w.stop(signal.SIGKILL)
            s.stop()
        broker.stop()


class Worker(Archiver):
    """`mpsarchive.py bus`: test_archive's Archiver (stop, sql, restore) on
    the bus instead of the firehose; every worker shares one archive."""

    def __init__(self, stack, name):
        wd = stack.workdir
        self.stack = stack
        self.db = os.path.join(wd, 'archive.db')
        self.store = os.path.join(wd, 'archive')
        self.proc = Daemon(wd, [PYTHON, PROG, '--debug', 'bus', '--url', stack.broker.url,
                                '--address', QUEUE, '--user', BUS_USER,
                                '--db', self.db, '--store', self.store],
                           name=name, env={'MPSARCHIVE_BUS_PASSWORD':
                                           stack.broker.password})
        stack.workers.append(self)

    def start(self):
        self.proc.start()
        self.proc.wait_log(r'consuming %s' % QUEUE, 30)
        return self


def journal_last(stack):
    import sqlite3
    db = sqlite3.connect('file:%s?mode=ro' % stack.db, uri=True, timeout=30)
    try:
        return db.execute('SELECT max(seq) FROM journal').fetchone()[0] or 0
    finally:
        db.close()


def archived_through(worker, seq):
    try:
        return int(worker.sql("SELECT value FROM meta WHERE key='last_seq'")[0][0]) >= seq
    except (IndexError, Exception):
        return False


def test_two_workers_share_the_queue(bstack):
    st = bstack
    w1 = Worker(st, 'archive-w1').start()
    w2 = Worker(st, 'archive-w2').start()
    alice = st.cyrus.imap('alice')
    assert alice.create('INBOX/Folder')[0] == 'OK'
    msgs = [msg_ascii(1), msg_8bit(), msg_recipients(), sized(1, 300 * 1024)]
    msgs += [msg_ascii(100 + i) for i in range(60)]
    half = len(msgs) // 2

    def deliver(part):
        for m in part:
            st.cyrus.deliver('alice', m)
    deliver(msgs[:half])
    # kill -9 of one worker while mail arrives: what it held unsettled
    # goes to the other, nothing is lost or stored twice
    t = threading.Thread(target=deliver, args=(msgs[half:],), daemon=True)
    t.start()
    wait_until(lambda: 'stored seq' in w1.proc.log(), 60, what='w1 storing')
    w1.stop(signal.SIGKILL)
    t.join(120)
    st.cyrus.deliver('alice', msg_ascii(500), mailbox='Folder')
    # flags and a move and an expunge, archived in order
    inbox, uv = fetch_box(alice, 'INBOX')
    alice.select('INBOX')
    first, second = sorted(inbox)[:2]
    assert alice.uid('STORE', str(first), '+FLAGS', '(\\Flagged)')[0] == 'OK'
    assert alice.uid('MOVE', str(second), 'INBOX/Folder')[0] == 'OK'
    w1b = Worker(st, 'archive-w1b').start()
    last = journal_last(st)
    wait_until(lambda: archived_through(w2, last), 120, interval=0.2,
               what='archive through journal seq %d' % last)

    # every journal seq once, every message stored once, bytes identical
    assert w2.sql('SELECT count(*), min(seq), max(seq) FROM events')[0] == (last, 1, last)
    assert w2.sql("SELECT count(*) FROM gaps")[0][0] == 0
    news = w2.sql("SELECT count(*) FROM messages WHERE origin IN "
                  "('MessageNew', 'MessageAppend')")[0][0]
    assert news == len(msgs) + 1
    assert w2.sql("SELECT count(*) FROM content_gaps WHERE resolved IS NULL")[0][0] == 0
    inbox, uv = fetch_box(alice, 'INBOX')
    folder, uvf = fetch_box(alice, 'INBOX/Folder')
    for d in list(inbox.values()) + list(folder.values()):
        with open(os.path.join(w2.store, d['sha'][:2], d['sha']), 'rb') as f:
            assert sha(f.read()) == d['sha']
    flagged = w2.sql("SELECT flags FROM messages WHERE node='INBOX' AND uid=? AND "
                     "end_seq IS NULL", first)[0][0]
    assert '\\Flagged' in flagged
    assert w2.sql("SELECT end_reason FROM messages WHERE node='INBOX' AND uid=?",
                  second)[0][0] == 'moved'
    # the load was shared (each worker stored some) and nothing twice
    for w in (w1b, w2):
        w.stop()
    took = {w.proc.name: w.proc.log().count('stored seq') for w in (w1, w2, w1b)}
    print('\nstored per worker: %s; journal through %d' % (took, last))
    assert took['archive-w2'] > 0 and took['archive-w1'] > 0
    # (a kill -9 between a commit and its log line would miss one line)
    assert last - 1 <= sum(took.values()) <= last
    # the queue is drained: every message was acknowledged
    assert st.broker.queue_length(QUEUE.split('/')[-1]) == 0

    # restore works as from the firehose: byte-identical into a new folder
    out = w2.restore('--mailbox', 'alice/INBOX/Folder', '--into', 'alice/INBOX/Restored')
    assert '0 failed' in out
    restored, _ = fetch_box(alice, 'INBOX/Restored')
    assert sorted(d['sha'] for d in restored.values()) == \
        sorted(d['sha'] for d in folder.values())
