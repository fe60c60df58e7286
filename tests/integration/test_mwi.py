"""The message-waiting-indicator example (examples/mwi/mwi.c) against a real
Prosody + Cyrus + mailpubsubd: what it prints is what a user would see."""
import os
import queue
import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from harness import make_message, wait_until
from stack import (NS_DISCO_INFO, NS_PUBSUB, PASSWORD, TOP,
                   disco_iq, iq_type, service_jid)

ALICE_SVC = service_jid('alice')
SOURCE = os.path.join(TOP, 'examples', 'mwi', 'mwi.c')


def mwi_binary(workdir):
    """$MWI, else the one `make` built, else one compiled here: the test
    never skips for want of a build."""
    path = os.environ.get('MWI', os.path.join(TOP, 'build', 'examples', 'mwi', 'mwi'))
    if os.access(path, os.X_OK):
        return path
    path = os.path.join(workdir, 'mwi')
    if os.access(path, os.X_OK):
        return path
    flags = subprocess.run(['pkg-config', '--cflags', '--libs', 'libstrophe'],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(['gcc', '-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra',
                    '-Wshadow', '-Wstrict-prototypes', '-Wmissing-prototypes',
                    '-Werror', '-o', path, SOURCE] + flags, check=True)
    return path


class Mwi:
    """mwi running in the background; stdout lines are read by a thread."""

    def __init__(self, workdir, port, *args, jid='alice@localhost',
                 password=PASSWORD, service=ALICE_SVC):
        self.errfile = os.path.join(workdir, 'mwi-%d.err' % time.monotonic_ns())
        argv = [mwi_binary(workdir), '-h', '127.0.0.1', '-p', str(port), '--plain',
                jid, password, service] + list(args)
        with open(self.errfile, 'wb') as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err,
                                         text=True, start_new_session=True)
        self.lines = []
        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip('\n'))
        self._queue.put(None)   # EOF

    def stderr(self):
        with open(self.errfile, errors='replace') as f:
            return f.read()

    def wait_line(self, expected, timeout=15.0):
        """Reads lines until one equals expected; returns those read."""
        deadline = time.monotonic() + timeout
        read = []
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
                eof = False
            else:
                eof = line is None
            if line is not None:
                read.append(line)
                self.lines.append(line)
                if line == expected:
                    return read
                continue
            raise AssertionError('%r not printed within %.0fs%s; stdout so far %r; '
                                 'stderr:\n%s' % (expected, timeout,
                                                  ' (mwi exited)' if eof else '',
                                                  self.lines, self.stderr()))

    def wait_all(self, expected, timeout=15.0):
        """Reads lines until each of the set expected was printed (any
        order); returns those read."""
        read, missing = [], set(expected)
        while missing:
            line = next(iter(missing))
            for got in self.wait_line(line, timeout):
                read.append(got)
                missing.discard(got)
        return read

    def wait_stderr(self, regex, timeout=15.0):
        def seen():
            if re.search(regex, self.stderr()):
                return True
            if self.proc.poll() is not None:
                raise AssertionError('mwi exited %s before %r; stderr:\n%s'
                                     % (self.proc.returncode, regex, self.stderr()))
            return False
        wait_until(seen, timeout, what='mwi stderr %r' % regex)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture
def mwis():
    started = []

    def run(*args, **kw):
        m = Mwi(*args, **kw)
        started.append(m)
        return m
    yield run
    for m in started:
        m.stop()


def wait_node(stack, node):
    """Nodes exist once an event named them (the user's MailboxCreate)."""
    alice = stack.client('alice')
    wait_until(lambda: iq_type(alice.iq(disco_iq(ALICE_SVC, NS_DISCO_INFO, node)))
               == 'result', 10, what='node %s' % node)
    return alice


def test_mwi_inbox_counts(stack, mwis, workdir):
    alice = wait_node(stack, 'INBOX')
    mwi = mwis(workdir, stack.prosody.c2s_port)
    # with options, or without them once the service refused them
    mwi.wait_stderr(r'subscribed to INBOX on ' + re.escape(ALICE_SVC))

    expected = []

    def step(line):
        expected.append(line)
        mwi.wait_line(line)

    for i in range(1, 4):
        stack.cyrus.deliver('alice', make_message(subject='m%d' % i))
        step('alice INBOX: %d unseen / %d' % (i, i))
    imap = stack.cyrus.imap('alice')
    imap.select('INBOX')
    imap.fetch('1', '(BODY[])')                  # read the first one
    step('alice INBOX: 2 unseen / 3')
    imap.store('2', '+FLAGS', '(\\Deleted)')     # an unread one goes
    imap.expunge()
    step('alice INBOX: 1 unseen / 2')
    imap.logout()
    assert mwi.lines[-len(expected):] == expected

    # a clean exit on SIGTERM, and the (persistent) subscription stays
    assert mwi.stop() == 0
    reply = alice.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><subscriptions/>"
                     "</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB))
    nodes = [s.get('node') for s in reply.iter('{%s}subscription' % NS_PUBSUB)]
    assert 'INBOX' in nodes, ET.tostring(reply, 'unicode')

    # a new run gets the current state from the last item, sent on subscribe
    again = mwis(workdir, stack.prosody.c2s_port)
    again.wait_line('alice INBOX: 1 unseen / 2')


def start_with_options(stack, mwis, workdir):
    wait_node(stack, 'INBOX')
    mwi = mwis(workdir, stack.prosody.c2s_port)
    mwi.wait_stderr(r'subscribed to INBOX on ')
    assert 'refused subscription options' not in mwi.stderr(), \
        'service does not support subscription options yet:\n' + mwi.stderr()
    return mwi


def test_mwi_covers_subfolders(stack, mwis, workdir):
    """Needs pubsub#subscription_depth=all (XEP-0060 6.3.7 options)."""
    mwi = start_with_options(stack, mwis, workdir)
    imap = stack.cyrus.imap('alice')
    assert imap.create('INBOX/Sub')[0] == 'OK'   # created after subscribing
    stack.cyrus.deliver('alice', make_message(), mailbox='Sub')
    mwi.wait_line('alice INBOX/Sub: 1 unseen / 1')
    stack.cyrus.deliver('alice', make_message())
    mwi.wait_line('alice INBOX: 1 unseen / 1')
    # the folder's state moves with it (Cyrus names only the renamed parent)
    assert imap.create('INBOX/Sub/Child')[0] == 'OK'
    mwi.wait_line('alice INBOX/Sub/Child: 0 unseen / 0')
    assert imap.rename('INBOX/Sub', 'INBOX/Moved')[0] == 'OK'
    got = mwi.wait_all({'alice INBOX/Moved: 1 unseen / 1',
                        'alice INBOX/Moved/Child: 0 unseen / 0'})
    imap.logout()
    assert not any('INBOX/Sub' in line for line in got), got
    assert mwi.proc.poll() is None


def test_mwi_subfolder_deleted(stack, mwis, workdir):
    """A depth=all subscriber learns that a folder below NODE is gone."""
    mwi = start_with_options(stack, mwis, workdir)
    imap = stack.cyrus.imap('alice')
    assert imap.create('INBOX/Old')[0] == 'OK'
    stack.cyrus.deliver('alice', make_message(), mailbox='Old')
    mwi.wait_line('alice INBOX/Old: 1 unseen / 1')
    assert imap.delete('INBOX/Old')[0] == 'OK'
    mwi.wait_line('alice INBOX/Old: deleted')
    imap.logout()
    assert mwi.proc.poll() is None


def test_mwi_errors(stack, mwis, workdir):
    wait_node(stack, 'INBOX')
    port = stack.prosody.c2s_port

    bad = mwis(workdir, port, password='wrong')
    assert bad.proc.wait(20) == 1
    assert 'login as alice@localhost failed: not-authorized' in bad.stderr(), \
        bad.stderr()

    nope = mwis(workdir, port, 'INBOX/Nope')
    assert nope.proc.wait(20) == 1
    assert re.search(r'refused: item-not-found', nope.stderr()), nope.stderr()

    # alice's service, where bob may not even see INBOX: as if it did not exist
    foreign = mwis(workdir, port, jid='bob@localhost')
    assert foreign.proc.wait(20) == 1
    assert re.search(r'refused: item-not-found', foreign.stderr()), foreign.stderr()

    usage = subprocess.run([mwi_binary(workdir), 'only-a-jid'],
                           capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2 and 'usage:' in usage.stderr
