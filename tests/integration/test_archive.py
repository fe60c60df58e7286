"""The archive/backup subscriber (examples/archive/mpsarchive.py) on the
firehose of a real mailpubsubd, behind a real Prosody, fed by a real Cyrus:
every message archived once and byte-identical, its history followed,
mailboxes and single messages restored over IMAP, nothing lost when the
archiver is stopped or killed while mail arrives."""
import datetime
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from email.message import EmailMessage

import pytest

from harness import Daemon, imap_date_instant, imap_quote, make_message, wait_until
from stack import COMPONENT, PASSWORD, TOP, Stack

PROG = os.path.join(TOP, 'examples', 'archive', 'mpsarchive.py')
PYTHON = '/usr/bin/python3'
ARCHIVER = 'archiver@localhost'


@pytest.fixture
def astack(workdir):
    s = Stack(workdir, users=('alice', 'bob', 'archiver'),
              config={'firehose': {'subscribers': ARCHIVER + ':archive'}})
    s.archivers = []
    try:
        s.start()
        yield s
    finally:
        for a in s.archivers:      # also when the test failed half-way
            a.stop(signal.SIGKILL)
        s.stop()


class Archiver:
    """mpsarchive.py run as a subprocess, its log in workdir/mpsarchive.log."""

    def __init__(self, stack, *extra):
        self.stack = stack
        self.extra = list(extra)
        wd = stack.workdir
        self.db = os.path.join(wd, 'archive.db')
        self.store = os.path.join(wd, 'archive')
        self.proc = Daemon(wd, self.argv(), name='mpsarchive')
        stack.archivers.append(self)

    def argv(self, *extra):
        return [PYTHON, PROG, 'run', '--jid', ARCHIVER, '--password', PASSWORD,
                '--server', '127.0.0.1', '--port', str(self.stack.prosody.c2s_port),
                '--tls', 'none', '--service', COMPONENT, '--db', self.db,
                '--store', self.store] + self.extra + list(extra)

    def start(self, timeout=60):
        self.proc.start()
        self.proc.wait_log(r'following live', timeout)
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc.running():
            self.proc.kill(sig)
            return self.proc.wait(20)
        return self.proc.returncode

    def log(self):
        return self.proc.log()

    def stats(self):
        r = subprocess.run([PYTHON, PROG, 'stats', '--db', self.db, '--json'],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def sql(self, query, *args):
        db = sqlite3.connect('file:%s?mode=ro' % self.db, uri=True, timeout=30)
        try:
            return db.execute(query, args).fetchall()
        finally:
            db.close()

    def count(self):
        try:
            return self.sql("SELECT count(*) FROM messages WHERE origin IN "
                            "('MessageNew', 'MessageAppend')")[0][0]
        except sqlite3.OperationalError:
            return 0

    def wait_count(self, n, timeout=60):
        try:
            return wait_until(lambda: self.count() >= n, timeout, 0.1,
                              what='%d messages archived' % n)
        except TimeoutError:
            raise AssertionError('archived %d of %d; archiver log tail:\n%s'
                                 % (self.count(), n, self.log()[-3000:]))

    def restore(self, *args):
        cy = self.stack.cyrus
        r = subprocess.run([PYTHON, PROG, 'restore', '--db', self.db, '--store',
                            self.store, '--imap-host', '127.0.0.1', '--imap-port',
                            str(cy.imap_port), '--admin', cy.admin, '--password',
                            cy.password] + list(args),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, 'restore %r: %s\n%s' % (args, r.stdout, r.stderr)
        return r.stdout


def sha(data):
    return hashlib.sha256(data).hexdigest()


def clean_flags(text):
    return sorted(f for f in text.split() if f.lower() not in ('\\recent', '\\deleted'))


def fetch_box(imap, box):
    """{uid: dict(data, sha, idate, flags)} of every message in box, and its
    UIDVALIDITY; BODY.PEEK leaves \\Seen alone."""
    typ, data = imap.select(imap_quote(box), readonly=True)
    assert typ == 'OK', data
    uv = int(imap.response('UIDVALIDITY')[1][0])
    typ, data = imap.uid('FETCH', '1:*', '(UID INTERNALDATE FLAGS BODY.PEEK[])')
    assert typ == 'OK', data
    out = {}
    for d in data:
        if not isinstance(d, tuple):
            continue
        meta = d[0].decode()
        uid = int(re.search(r'UID (\d+)', meta).group(1))
        mid = re.search(rb'(?im)^Message-ID:\s*(<[^>]*>)', d[1])
        out[uid] = dict(data=d[1], sha=sha(d[1]), mid=mid.group(1).decode() if mid else None,
                        idate=re.search(r'INTERNALDATE "([^"]+)"', meta).group(1),
                        flags=clean_flags(re.search(r'FLAGS \(([^)]*)\)', meta).group(1)))
    return out, uv


# ---- the messages --------------------------------------------------------

def msg_ascii(n):
    return make_message(subject='plain ascii %d' % n,
                        body='Just ASCII, line one.\r\nLine two.\r\n',
                        to='alice@localhost', message_id='<ascii%d@archive.test>' % n)


def msg_8bit():
    body = ('Grüße aus Köln – ça va? Ελληνικά, 日本語.\r\n' * 20).encode('utf-8')
    return (b'From: sender@example.com\r\nTo: alice@localhost\r\n'
            b'Subject: 8bit body\r\nMessage-ID: <8bit@archive.test>\r\n'
            b'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n'
            b'Content-Type: text/plain; charset=utf-8\r\n'
            b'Content-Transfer-Encoding: 8bit\r\n\r\n' + body)


def msg_attachment(size=5 * 1024 * 1024):
    m = EmailMessage()
    m['From'] = 'sender@example.com'
    m['To'] = 'alice@localhost'
    m['Subject'] = 'a 5 MB attachment'
    m['Message-ID'] = '<attachment@archive.test>'
    m['Date'] = 'Mon, 1 Jan 2024 00:00:00 +0000'
    m.set_content('See the attachment.\n')
    m.add_attachment(os.urandom(size), maintype='application',
                     subtype='octet-stream', filename='blob.bin')
    return m.as_bytes(policy=m.policy.clone(linesep='\r\n'))


def msg_recipients(n=300):
    to = ', '.join('Person %d <p%d@example.com>' % (i, i) for i in range(n // 2))
    cc = ', '.join('Other %d <o%d@example.org>' % (i, i) for i in range(n - n // 2))
    return ('From: sender@example.com\r\nTo: %s\r\nCc: %s\r\n'
            'Subject: 300 recipients\r\nMessage-ID: <many@archive.test>\r\n'
            'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nHello all.\r\n'
            % (to, cc)).encode()


def sized(n, size):
    line = ('x' * 74 + '\r\n')
    body = line * (size // len(line) + 1)
    return make_message(subject='load %d' % n, body=body[:size],
                        message_id='<load%d.%d@archive.test>' % (size, n))


# ---- the tests -----------------------------------------------------------

def test_archive_and_restore(astack):
    st = astack
    arch = Archiver(st).start()
    alice = st.cyrus.imap('alice')
    assert alice.create('INBOX/Folder')[0] == 'OK'

    inbox_msgs = [msg_ascii(1), msg_8bit(), msg_attachment(), msg_recipients(),
                  msg_ascii(2), msg_ascii(3), msg_ascii(4)]
    folder_msgs = [msg_ascii(10), msg_ascii(11)]
    for m in inbox_msgs:
        st.cyrus.deliver('alice', m)
    for m in folder_msgs:
        st.cyrus.deliver('alice', m, mailbox='Folder')
    total = len(inbox_msgs) + len(folder_msgs)
    arch.wait_count(total, 90)

    inbox, uv_inbox = fetch_box(alice, 'INBOX')
    folder, uv_folder = fetch_box(alice, 'INBOX/Folder')
    # (lmtpd prepends Return-Path/Received: the store's bytes are the reference)
    assert len(inbox) == len(inbox_msgs) and len(folder) == len(folder_msgs)
    before = {d['sha'] for d in list(inbox.values()) + list(folder.values())}

    # every message archived byte-identical, with its envelope
    rows = arch.sql("SELECT sha256, message_id, to_addr, cc_addr, internaldate, "
                    "node FROM messages")
    archived = {r[0] for r in rows}
    assert before <= archived
    for h in before:
        with open(os.path.join(arch.store, h[:2], h), 'rb') as f:
            assert sha(f.read()) == h
    by_id = {r[1]: r for r in rows}
    many = by_id['<many@archive.test>']
    assert many[2].count('@example.com') == 150 and many[3].count('@example.org') == 150
    assert by_id['<attachment@archive.test>'][5] == 'INBOX'
    uid_of = {d['mid']: uid for uid, d in inbox.items()}
    for uid, d in inbox.items():
        stored = arch.sql('SELECT internaldate FROM messages WHERE node=? AND uid=?',
                          'INBOX', uid)[0][0]
        assert imap_date_instant(stored) == imap_date_instant(d['idate'])

    # flags, a move, an expunge, a folder deleted
    alice.select('INBOX')
    u_8bit = uid_of['<8bit@archive.test>']
    u_many = uid_of['<many@archive.test>']
    u_move = uid_of['<ascii2@archive.test>']
    u_gone = uid_of['<ascii3@archive.test>']
    assert alice.uid('STORE', str(u_8bit), '+FLAGS', '(\\Seen $Label1)')[0] == 'OK'
    assert alice.uid('STORE', str(u_many), '+FLAGS', '(\\Flagged)')[0] == 'OK'
    assert alice.uid('STORE', str(u_gone), '+FLAGS', '(\\Answered)')[0] == 'OK'
    assert alice.uid('MOVE', str(u_move), 'INBOX/Folder')[0] == 'OK'
    alice.select('INBOX')
    assert alice.uid('STORE', str(u_gone), '+FLAGS', '(\\Deleted)')[0] == 'OK'
    assert alice.expunge()[0] == 'OK'
    gone = dict(inbox[u_gone], flags=clean_flags(' '.join(inbox[u_gone]['flags'] +
                                                          ['\\Answered'])))
    folder_before_delete, _ = fetch_box(alice, 'INBOX/Folder')
    assert len(folder_before_delete) == 3
    alice.select('INBOX')
    assert alice.delete('INBOX/Folder')[0] == 'OK'

    def deleted_seen():
        return arch.sql("SELECT count(*) FROM messages WHERE end_reason='deleted' "
                        "AND node='INBOX/Folder'")[0][0] == 3
    wait_until(deleted_seen, 30, 0.1, what='MailboxDelete archived')
    # the state the archive followed
    rows = arch.sql("SELECT uid, flags FROM messages WHERE node='INBOX' AND "
                    "end_seq IS NULL")
    present = dict(rows)
    assert set(present) == set(inbox) - {u_move, u_gone}
    assert '$Label1' in present[u_8bit].split() and '\\Seen' in present[u_8bit].split()
    assert '\\Flagged' in present[u_many].split()
    assert arch.sql("SELECT end_reason FROM messages WHERE node='INBOX' AND uid=?",
                    u_gone) == [('expunged',)]
    assert arch.sql("SELECT end_reason FROM messages WHERE node='INBOX' AND uid=?",
                    u_move) == [('moved',)]
    assert arch.count() == total      # copies are not new messages
    s = arch.stats()
    assert [g for g in s['gaps'] if g['state'] == 'lost'] == [], s['gaps']
    assert s['content_gaps'] == [], s['content_gaps']
    assert s['errors'] == 0

    # restore the deleted folder and the expunged message into INBOX/Restored
    out = arch.restore('--mailbox', 'alice/INBOX/Folder', '--into',
                       'alice/INBOX/Restored')
    assert '3 restored, 0 failed' in out, out
    out = arch.restore('--message', 'alice/INBOX/%d/%d' % (uv_inbox, u_gone),
                       '--into', 'alice/INBOX/Restored')
    assert '1 restored, 0 failed' in out, out
    restored, _ = fetch_box(alice, 'INBOX/Restored')
    want = sorted((d['sha'], d['idate'], tuple(d['flags']))
                  for d in list(folder_before_delete.values()) + [gone])
    got = sorted((d['sha'], d['idate'], tuple(d['flags'])) for d in restored.values())
    assert got == want
    # ... and a state in the past: INBOX/Folder just before the move, by time
    # and by journal seq
    last_in = arch.sql("SELECT max(first_t) FROM messages WHERE node='INBOX/Folder' "
                       "AND origin='MessageNew'")[0][0]
    moved_in, move_seq = arch.sql("SELECT first_t, first_seq FROM messages WHERE "
                                  "node='INBOX/Folder' AND origin='move'")[0]
    assert moved_in - last_in > 0.002
    at = datetime.datetime.fromtimestamp(moved_in - 0.001,
                                         datetime.timezone.utc).isoformat()
    arch.restore('--mailbox', 'alice/INBOX/Folder', '--at', at, '--into',
                 'alice/INBOX/Then')
    arch.restore('--mailbox', 'alice/INBOX/Folder', '--at-seq', str(move_seq - 1),
                 '--into', 'alice/INBOX/Then2')
    for box in ('INBOX/Then', 'INBOX/Then2'):
        then, _ = fetch_box(alice, box)
        assert sorted((d['sha'], d['idate']) for d in then.values()) == \
            sorted((d['sha'], d['idate']) for d in folder.values())

    # into another account
    out = arch.restore('--message', 'alice/INBOX/%d/%d' % (uv_inbox, u_gone),
                       '--into', 'bob/INBOX/From alice')
    bob = st.cyrus.imap('bob')
    got, _ = fetch_box(bob, 'INBOX/From alice')
    bob.logout()
    assert [(d['sha'], d['idate'], d['flags']) for d in got.values()] == \
        [(gone['sha'], gone['idate'], gone['flags'])]

    # a rename of a folder with a child: Cyrus reports the parent only
    assert alice.create('INBOX/Old/Child')[0] == 'OK'
    st.cyrus.deliver('alice', msg_ascii(20), mailbox='Old')
    st.cyrus.deliver('alice', msg_ascii(21), mailbox='Old/Child')
    arch.wait_count(total + 2, 30)
    alice.select('INBOX')
    assert alice.rename('INBOX/Old', 'INBOX/New')[0] == 'OK'
    wait_until(lambda: arch.sql("SELECT count(*) FROM messages WHERE origin='rename' "
                                "AND end_seq IS NULL")[0][0] == 2, 30, 0.1,
               what='MailboxRename archived')
    assert sorted(arch.sql("SELECT node, end_reason FROM messages WHERE node LIKE "
                           "'INBOX/Old%' OR node LIKE 'INBOX/New%'")) == [
        ('INBOX/New', None), ('INBOX/New/Child', None),
        ('INBOX/Old', 'renamed'), ('INBOX/Old/Child', 'renamed')]
    # the old name, restored as it was before the rename
    out = arch.restore('--mailbox', 'alice/INBOX/Old/Child', '--into',
                       'alice/INBOX/Child again')
    again, _ = fetch_box(alice, 'INBOX/Child again')
    child, _ = fetch_box(alice, 'INBOX/New/Child')
    assert [d['sha'] for d in again.values()] == [d['sha'] for d in child.values()]

    alice.logout()
    assert arch.stop() == 0
    assert 'Traceback' not in arch.log()


def test_archiver_stopped_and_killed_while_mail_arrives(astack):
    st = astack
    arch = Archiver(st).start()
    n = 60
    delivered = []
    errors = []

    def deliver():
        try:
            for i in range(n):
                m = make_message(subject='burst %d' % i, body='burst %d\r\n' % i,
                                 message_id='<burst%d@archive.test>' % i)
                st.cyrus.deliver('alice', m)
                delivered.append(sha(m))
                time.sleep(0.05)
        except Exception as e:      # pragma: no cover - reported below
            errors.append(e)
    t = threading.Thread(target=deliver)
    t.start()
    wait_until(lambda: len(delivered) >= 10, 30)
    assert arch.stop(signal.SIGTERM) == 0
    wait_until(lambda: len(delivered) >= 20, 30)
    arch.start()
    wait_until(lambda: len(delivered) >= 35, 30)
    arch.stop(signal.SIGKILL)
    wait_until(lambda: len(delivered) >= 45, 30)
    arch.start()
    t.join(60)
    assert not errors, errors
    arch.wait_count(n, 60)
    # a restart of mailpubsubd: its repeats are dropped, nothing is missed
    st.stop_daemon()
    st.start_daemon()
    for i in range(3):
        m = make_message(subject='after restart %d' % i, message_id='<ar%d@archive.test>' % i)
        st.cyrus.deliver('alice', m)
        delivered.append(sha(m))
    arch.wait_count(n + 3, 60)
    # a restart of Prosody: the archiver reconnects and catches up
    st.prosody.stop()
    st.prosody.start()
    st.daemon.wait_log(r'component connected', 30)
    for i in range(3):
        m = make_message(subject='after prosody %d' % i, message_id='<ap%d@archive.test>' % i)
        st.cyrus.deliver('alice', m)
        delivered.append(sha(m))
    arch.wait_count(n + 6, 60)
    time.sleep(1)
    assert arch.count() == n + 6
    archived = [r[0] for r in arch.sql("SELECT sha256 FROM messages WHERE origin="
                                       "'MessageNew' AND account='alice'")]
    imap = st.cyrus.imap('alice')
    inbox, _ = fetch_box(imap, 'INBOX')
    imap.logout()
    assert len(inbox) == len(delivered)
    assert sorted(archived) == sorted(d['sha'] for d in inbox.values())
    s = arch.stats()
    assert [g for g in s['gaps'] if g['state'] == 'lost'] == [], s['gaps']
    assert s['content_gaps'] == [] and s['errors'] == 0
    print('\nstop/kill/restart: %d messages, gaps %r, content gaps resolved by '
          'repeats: %d' % (arch.count(), s['gaps'], s['content_gaps_resolved']))
    # the journal has every seq: none skipped
    seqs = [r[0] for r in arch.sql('SELECT seq FROM events ORDER BY seq')]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert arch.stop() == 0
    assert 'Traceback' not in arch.log()


def test_throughput(astack):
    st = astack
    arch = Archiver(st).start()
    results = []
    base = 0
    for label, count, size in (('1 KB', 200, 1024), ('1 MB', 20, 1024 * 1024)):
        msgs = [sized(i, size) for i in range(count)]
        mb = sum(len(m) for m in msgs) / 1e6
        # live: LMTP delivery -> daemon -> firehose -> archive
        t0 = time.monotonic()
        for m in msgs:
            st.cyrus.deliver('alice', m)
        t_lmtp = time.monotonic() - t0
        arch.wait_count(base + count, 120)
        t_live = time.monotonic() - t0
        base += count
        # catch-up: the archiver alone, from the daemon's journal
        arch.stop()
        msgs = [sized(1000 + i, size) for i in range(count)]
        for m in msgs:
            st.cyrus.deliver('alice', m)
        time.sleep(1)
        r = subprocess.run(arch.argv('--catch-up-only'), capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, r.stderr[-3000:]
        m = re.search(r'caught up (\d+) items in ([\d.]+) s', r.stderr)
        assert m, r.stderr[-3000:]
        base += count
        assert arch.count() == base
        t_cu = float(m.group(2))
        results.append((label, count, mb, t_lmtp, t_live, int(m.group(1)), t_cu))
        arch.start()
    for label, count, mb, t_lmtp, t_live, items, t_cu in results:
        print('\narchive throughput, %d x %s (%.1f MB): live (LMTP delivery to '
              'archived) %.1f msg/s, %.2f MB/s [LMTP alone %.1f msg/s]; catch-up '
              '(%d firehose items incl. non-message events) %.1f msg/s, %.2f MB/s'
              % (count, label, mb, count / t_live, mb / t_live, count / t_lmtp,
                 items, count / t_cu, mb / t_cu))
    assert arch.stop() == 0


def test_catch_up_of_inline_content(astack):
    """Messages under [firehose] inline_max come inline, also in catch-up
    pages: 30 x 100 KB missed while away are all archived."""
    st = astack
    arch = Archiver(st, '--page-timeout', '5').start()
    assert arch.stop() == 0
    for i in range(30):
        st.cyrus.deliver('alice', sized(i, 100 * 1000))
    t0 = time.monotonic()
    arch.start(timeout=90)
    arch.wait_count(30, 30)
    took = time.monotonic() - t0
    imap = st.cyrus.imap('alice')
    inbox, _ = fetch_box(imap, 'INBOX')
    imap.logout()
    assert sorted(r[0] for r in arch.sql('SELECT sha256 FROM messages')) == \
        sorted(d['sha'] for d in inbox.values())
    assert arch.stats()['content_gaps'] == []
    assert arch.stop() == 0
    print('\ncatch-up of 30 x 100 KB inline: %.1f s' % took)
    # the daemon keeps RSM pages under Prosody's 512 KiB component stanza
    # limit: no page had to be retried smaller
    assert 'page after' not in arch.log()
