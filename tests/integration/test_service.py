"""Running under systemd: sd_notify and SIGHUP, against the real stack.

The daemon is started as systemd would start a Type=notify unit: with
NOTIFY_SOCKET naming a datagram socket (here one the test binds and reads)
and WATCHDOG_USEC. systemd is not PID 1 on the test machine, so the test
plays its part: it reads READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and
STOPPING=1 as systemd would, and sends SIGHUP as `systemctl reload` does.
"""
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

from harness import Daemon, make_message, wait_until
from stack import (COMPONENT, Stack, daemon_binary, error_of, event_items, iq_type,
                   service_jid, subscribe_iq, wait_event)

FIREHOSE = 'mailpubsub:firehose'
HERE = os.path.dirname(os.path.abspath(__file__))


class NotifyReader:
    """systemd's end of NOTIFY_SOCKET: every datagram, in order, with
    whether the watched paths existed when it arrived."""

    def __init__(self, path, watch=()):
        self.path = path
        self.watch = list(watch)
        self.messages = []      # (monotonic time, text, {path: existed})
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            seen = {p: os.path.exists(p) for p in self.watch}
            self.messages.append((time.monotonic(), data.decode(), seen))

    def lines(self):
        return [line for _, text, _ in self.messages for line in text.split('\n')]

    def wait_line(self, regex, after=0, timeout=15.0):
        """The index of the first datagram from index `after` with a line
        matching regex."""
        pat = re.compile(regex)

        def find():
            for i, (_, text, _) in enumerate(self.messages[after:], after):
                if any(pat.fullmatch(line) for line in text.split('\n')):
                    return i
            return None
        wait_until(lambda: find() is not None, timeout, what='sd_notify ' + regex)
        return find()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def service_stack(workdir):
    """Prosody + Cyrus up, the configuration written, no daemon yet."""
    s = Stack(workdir, config={'log': {'level': 'info'}})
    try:
        s.start(start_daemon=False)
        yield s
    finally:
        s.stop()


def start_notified(s, reader, watchdog_usec=None):
    env = {'NOTIFY_SOCKET': reader.path}
    if watchdog_usec is not None:
        env['WATCHDOG_USEC'] = str(watchdog_usec)
    s.daemon = Daemon(s.workdir, [daemon_binary(), '-f', '-c', s.conf], env=env)
    s.daemon.start()
    return s.daemon


def test_ready_status_watchdog(service_stack, workdir):
    s = service_stack
    reader = NotifyReader(os.path.join(workdir, 'systemd-notify.sock'),
                          watch=[s.notify_socket, s.db])
    try:
        start_notified(s, reader, watchdog_usec=1000000)
        ready = reader.wait_line(r'READY=1')
        _, _, existed = reader.messages[ready]
        assert existed[s.db], 'READY=1 before the store was opened'
        assert existed[s.notify_socket], 'READY=1 before the Cyrus socket was bound'
        assert not any('READY=1' in text for _, text, _ in reader.messages[:ready])

        up = reader.wait_line(r'STATUS=component connected; backlog 0 events')
        # WatchdogSec=1s: a WATCHDOG=1 at least every half second
        first = reader.wait_line(r'WATCHDOG=1', timeout=3)
        second = reader.wait_line(r'WATCHDOG=1', after=first + 1, timeout=3)
        gap = reader.messages[second][0] - reader.messages[first][0]
        assert gap < 1.0, 'watchdog pings %.2f s apart (WATCHDOG_USEC 1 s)' % gap

        # the XMPP server goes away: the status says so at once, and the
        # events Cyrus sends meanwhile show as backlog
        s.prosody.stop()
        down = reader.wait_line(r'STATUS=component disconnected, reconnecting; '
                                r'backlog \d+ events?', after=up + 1)
        s.cyrus.deliver('alice', make_message(subject='while down'))
        reader.wait_line(r'STATUS=component disconnected, reconnecting; '
                         r'backlog [1-9]\d* events?', after=down + 1)
        s.prosody.start()
        reader.wait_line(r'STATUS=component connected; backlog 0 events',
                         after=down + 1, timeout=40)

        # STATUS is sent when it changes, not on every tick
        statuses = [line for line in reader.lines() if line.startswith('STATUS=')]
        assert all(a != b for a, b in zip(statuses, statuses[1:])), statuses

        mark = len(reader.messages)
        s.daemon.kill(signal.SIGHUP)
        reloading = reader.wait_line(r'RELOADING=1', after=mark)
        assert any(line.startswith('MONOTONIC_USEC=')
                   for line in reader.messages[reloading][1].split('\n'))
        reader.wait_line(r'READY=1', after=reloading + 1)

        mark = len(reader.messages)
        assert s.stop_daemon() == 0
        reader.wait_line(r'STOPPING=1', after=mark, timeout=5)
    finally:
        reader.close()


def debug_lines(log):
    return [line for line in log.splitlines() if '[debug]' in line]


def set_level(s, level, **extra):
    s.write_config(log={'level': level}, **extra)


def deliver_and_wait(s, subject):
    """A message through Cyrus, seen journaled (an info line, whatever the
    level); returns the log written since."""
    before = len(s.daemon.log())
    s.cyrus.deliver('alice', make_message(subject=subject))
    # MessageNew and MailboxModseq: the journal line comes at debug only,
    # the statistics on SIGUSR1 at every level
    wait_until(lambda: stats_journaled(s) > deliver_and_wait.journaled, 15,
               what='journaled')
    deliver_and_wait.journaled = stats_journaled(s)
    return s.daemon.log()[before:]


deliver_and_wait.journaled = 0


def stats_journaled(s):
    mark = len(s.daemon.log())
    s.daemon.kill(signal.SIGUSR1)
    m = None
    deadline = time.monotonic() + 5
    while m is None and time.monotonic() < deadline:
        m = re.search(r'stats: .*journaled=(\d+)', s.daemon.log()[mark:])
        time.sleep(0.05)
    assert m, 'no stats line on SIGUSR1'
    return int(m.group(1))


def test_sighup_log_level_and_bad_config(service_stack):
    s = service_stack
    deliver_and_wait.journaled = 0
    s.start_daemon()
    assert not debug_lines(deliver_and_wait(s, 'at info')), 'debug lines at level info'

    set_level(s, 'debug')
    s.daemon.kill(signal.SIGHUP)
    s.daemon.wait_log(r'reload: \[log\] level = debug \(was info\)')
    s.daemon.wait_log(r'reload: .* read: 1 change applied, 0 waiting for a restart')
    seen = debug_lines(deliver_and_wait(s, 'at debug'))
    assert any('ingest: #' in line for line in seen), seen

    # a broken file: logged, nothing of it applied, still at debug
    with open(s.conf, 'a') as f:
        f.write('\n[log]\nlevel = loud\n')
    s.daemon.kill(signal.SIGHUP)
    s.daemon.wait_log(r'reload: .*\[log\] level must be debug, info, warning or '
                      r'error; the running configuration is kept')
    assert any('ingest: #' in line
               for line in debug_lines(deliver_and_wait(s, 'after a bad file')))
    assert s.daemon.running()

    # back to info, with an option that needs a restart changed too: named,
    # and not applied
    set_level(s, 'info', store={'full_sync': 'yes'})
    s.daemon.kill(signal.SIGHUP)
    s.daemon.wait_log(r'reload: \[store\] full_sync changed \(to yes\): needs a '
                      r'restart; still no')
    s.daemon.wait_log(r'read: 1 change applied, 1 waiting for a restart')
    assert not debug_lines(deliver_and_wait(s, 'at info again'))


def test_sighup_firehose_subscriber_removed(workdir):
    """Taking a JID out of [firehose] subscribers and reloading ends its
    copy of every message at once: the subscription goes, and the node is
    invisible to it again."""
    s = Stack(workdir, users=('alice', 'archiver'),
              config={'firehose': {'subscribers': 'archiver@localhost:archive'},
                      'log': {'level': 'info'}})
    try:
        s.start()
        archiver, alice = s.client('archiver'), s.client('alice')
        assert iq_type(archiver.iq(subscribe_iq(COMPONENT, FIREHOSE,
                                                'archiver@localhost'))) == 'result'
        assert iq_type(alice.iq(subscribe_iq(service_jid('alice'), 'INBOX',
                                             'alice@localhost'))) == 'result'
        s.cyrus.deliver('alice', make_message(subject='archived'))
        archiver.wait_message(lambda m: (event_items(m) or (None,))[0] == FIREHOSE, 15)
        wait_event(alice, 'MessageNew')

        s.write_config(firehose={'subscribers': ''})
        s.daemon.kill(signal.SIGHUP)
        s.daemon.wait_log(r'firehose: archiver@localhost is no longer in \[firehose\] '
                          r'subscribers: subscription removed')
        s.daemon.wait_log(r'reload: .* read: 1 change applied', from_start=True)

        con = sqlite3.connect(s.db)
        removed_at = con.execute('SELECT max(seq) FROM journal').fetchone()[0]
        con.close()

        def later_item(m):
            # items journaled before the reload may still be on their way
            node, items = event_items(m) or (None, [])
            return node == FIREHOSE and any(int(i) > removed_at for i, _ in items)
        s.cyrus.deliver('alice', make_message(subject='not archived'))
        wait_event(alice, 'MessageNew')      # the event went out to alice...
        with pytest.raises(TimeoutError):    # ...and not on the firehose
            archiver.wait_message(later_item, 2)
        reply = archiver.iq(subscribe_iq(COMPONENT, FIREHOSE, 'archiver@localhost'))
        assert error_of(reply)[1] == 'item-not-found', error_of(reply)
    finally:
        s.stop()


def test_man_page_marks_what_sighup_applies(workdir):
    """mailpubsub.conf(5) marks every option [SIGHUP] or [restart] as the
    option table (mailpubsubd --dump-config) says."""
    conf = os.path.join(workdir, 'min.conf')
    with open(conf, 'w') as f:
        f.write('[component]\ndomain = d\nsecret = s\n')
    dump = subprocess.run([daemon_binary(), '--dump-config', '-c', conf],
                          capture_output=True, text=True, check=True).stdout
    table, section, prev = {}, None, ''
    for line in dump.splitlines():
        m = re.fullmatch(r'\[(\w+)\]', line)
        if m:
            section = m.group(1)
        m = re.match(r'(\w+) = ', line)
        if m and section != 'account_map':
            table[(section, m.group(1))] = ('SIGHUP' if prev == '# SIGHUP applies a change.'
                                            else 'restart')
        prev = line
    man_path = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'man',
                            'mailpubsub.conf.5')
    marked, section = {}, None
    with open(man_path) as f:
        for line in f:
            m = re.match(r'\.SS \[(\w+)\]', line)
            if m:
                section = m.group(1)
            m = re.match(r'\.BR (\w+)(?: ", " (\w+))? ".*\[(SIGHUP|restart)\]"$', line)
            if m:
                for name in filter(None, m.group(1, 2)):
                    marked[(section, name)] = m.group(3)
    assert len(table) > 50
    assert marked == table


def test_journal_priorities(service_stack):
    """Under systemd stderr is the journal (JOURNAL_STREAM names it): lines
    carry their priority as "<N>" and no time stamp of ours."""
    s = service_stack
    s.write_config(log={'level': 'debug'})
    log = os.path.join(s.workdir, 'mailpubsubd.log')
    open(log, 'ab').close()
    st = os.stat(log)
    s.daemon = Daemon(s.workdir, [daemon_binary(), '-f', '-c', s.conf],
                      env={'JOURNAL_STREAM': '%d:%d' % (st.st_dev, st.st_ino)})
    s.daemon.start()
    s.daemon.wait_log(r'(?m)^<6>mailpubsubd \S+ started')
    s.daemon.wait_log(r'(?m)^<7>', from_start=True)
    s.daemon.wait_log(r'(?m)^<6>xmpp: component connected', from_start=True, timeout=30)
    s.prosody.stop()
    s.daemon.wait_log(r'(?m)^<6>xmpp: component disconnected')
    s.daemon.wait_log(r'(?m)^<[34]>component events.localhost: ', timeout=15)
    lines = [line for line in s.daemon.log().splitlines() if line]
    assert all(re.match(r'<[3467]>', line) for line in lines), lines[:5]
