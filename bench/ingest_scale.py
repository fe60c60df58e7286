"""Benchmarks: ingest (durable journaling, sender stalls) and scale (a
store with 1M nodes and 1M subscriptions), each printed beside a peer run
in the same invocation.

    /usr/bin/python3 bench/ingest_scale.py BUILD_DIR [--nodes N] [--ingest-only]

Ingest: tests/cyrus_sender sends real captured Cyrus datagrams the way
Cyrus does (a fresh socket per event, blocking sendto) to mailpubsubd
(full_sync = yes: every batch fsynced) at full speed and at 10k/s. The peer
is a reader that only drains the socket (Python, no journal), which bounds
what any reader gets from this sender on this machine.

Scale: mailpubsubd restarted over a store holding N nodes and N
subscriptions (default 1M each): start-up time, RSS, and the time to route
events to subscribers (through a private Prosody), against the same run on
an empty store.
"""
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))

from harness import Daemon, Prosody, free_port, wait_until  # noqa: E402

COMPONENT = 'events.localhost'


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        return int([l for l in f if l.startswith('VmRSS')][0].split()[1])


def captured(kind='MessageNew'):
    d = os.path.join(TOP, 'tests', 'data', 'cyrus')
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.endswith('-%s.dgram' % kind))


def sender(build, path, rate, seconds):
    out = subprocess.run([os.path.join(build, 'tests', 'cyrus_sender'), path,
                          str(rate), str(seconds)] + captured(),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def write_conf(work, notify, db, prosody=None, full_sync='yes'):
    conf = os.path.join(work, 'bench.conf')
    with open(conf, 'w') as f:
        f.write(f"""[component]
host = 127.0.0.1
port = {prosody.component_port if prosody else free_port()}
domain = {COMPONENT}
secret = {prosody.secret if prosody else 'x'}

[cyrus]
notify_socket = {notify}
socket_group =

[store]
path = {db}
full_sync = {full_sync}

[accounts]
jid_domains = localhost

[log]
level = info
""")
    return conf


def journaled(db):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute('SELECT count(*) FROM journal').fetchone()[0]
    finally:
        con.close()


def bench_ingest(build, work):
    """Rows: mailpubsubd journaling durably, and the drain-only peer."""
    rows = []
    # the peer: a reader that drains and counts
    path = os.path.join(work, 'sink.sock')
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    got = [0]
    stop = threading.Event()

    def drain():
        sink.settimeout(0.2)
        while not stop.is_set():
            try:
                sink.recv(70000)
                got[0] += 1
            except socket.timeout:
                pass
    t = threading.Thread(target=drain)
    t.start()
    peer = sender(build, path, 0, 5)
    stop.set()
    t.join()
    sink.close()
    rows.append(('ingest, peer: drain-only reader (Python), full speed',
                 peer['sent'] / peer['seconds'], peer))

    notify = os.path.join(work, 'notify.sock')
    db = os.path.join(work, 'ingest.db')
    conf = write_conf(work, notify, db)
    d = Daemon(work, [os.path.join(build, 'mailpubsubd'), '-f', '-c', conf])
    d.start()
    try:
        wait_until(lambda: os.path.exists(notify), 10, what='notify socket')
        for rate in (0, 10000):
            before = journaled(db)
            t0 = time.monotonic()
            res = sender(build, notify, rate, 5)
            wait_until(lambda: journaled(db) - before >= res['sent'], 120,
                       interval=0.05, what='journaled')
            took = time.monotonic() - t0
            rows.append(('ingest, mailpubsubd journaled durably, sender at %s'
                         % ('full speed' if rate == 0 else '%d/s' % rate),
                         res['sent'] / took, res))
        log = d.log()
        assert 'events dropped' not in log
    finally:
        d.stop()
    return rows


def fill_store(db, n):
    """n nodes in n / 100 accounts and one subscription per node, written
    the way mailpubsubd's schema has them (the daemon creates the schema
    at its first start)."""
    con = sqlite3.connect(db)
    now = int(time.time() * 1e6)
    accounts = max(1, n // 100)
    con.execute('BEGIN')
    con.executemany(
        'INSERT OR IGNORE INTO nodes (account, node, created_us) VALUES (?, ?, ?)',
        (('u%d' % (i % accounts), 'INBOX' if i < accounts else 'INBOX/f%d' % i, now)
         for i in range(n)))
    con.executemany(
        'INSERT OR IGNORE INTO subscriptions (account, node, jid, subid, created_us)'
        ' VALUES (?, ?, ?, ?, ?)',
        (('u%d' % (i % accounts), 'INBOX' if i < accounts else 'INBOX/f%d' % i,
          'u%d@localhost' % (i % accounts), '%032x' % i, now) for i in range(n)))
    con.commit()
    con.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    con.close()
    return accounts


def route_events(work, notify, db, accounts, n_events):
    """Sends n_events MessageNew for random accounts' INBOX and returns the
    seconds until all are published."""
    con = sqlite3.connect(db, timeout=30)
    mark = lambda: con.execute(  # noqa: E731
        "SELECT value FROM meta WHERE key = 'published_seq'").fetchone()
    last = lambda: con.execute('SELECT max(seq) FROM journal').fetchone()[0]  # noqa: E731
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    for i in range(n_events):
        acct = 'u%d' % random.randrange(accounts)
        body = json.dumps({'event': 'MessageNew', 'uri':
                           'imap://localhost/user/%s;UIDVALIDITY=1/;UID=%d' % (acct, i + 1),
                           'messages': i + 1, 'vnd.cmu.unseenMessages': 1},
                          separators=(',', ':'))
        s.sendto(b'pubsub\0EVENT\0\0\0\0' b'0\0' + body.encode() + b'\0', notify)
    wait_until(lambda: last() is not None and mark() is not None and
               mark()[0] == last(), 300, interval=0.05, what='published')
    took = time.monotonic() - t0
    s.close()
    con.close()
    return took


def bench_scale(build, work, n):
    rows = []
    prosody = Prosody(os.path.join(work, 'p'), component_domain=COMPONENT)
    prosody.start()
    try:
        for label, size in (('empty store (peer)', 0), ('%d nodes + %d subscriptions' % (n, n), n)):
            sub = os.path.join(work, 's%d' % size)
            os.makedirs(sub)
            notify = os.path.join(sub, 'notify.sock')
            db = os.path.join(sub, 'scale.db')
            conf = write_conf(sub, notify, db, prosody, full_sync='no')
            d = Daemon(sub, [os.path.join(build, 'mailpubsubd'), '-f', '-c', conf])
            d.start()
            d.wait_log('component connected', timeout=30)
            d.stop()
            accounts = fill_store(db, size) if size else 100
            t0 = time.monotonic()
            d = Daemon(sub, [os.path.join(build, 'mailpubsubd'), '-f', '-c', conf])
            d.start()
            try:
                d.wait_log('component connected', timeout=120)
                wait_until(lambda: os.path.exists(notify), 30, what='notify socket')
                start_s = time.monotonic() - t0
                rss_start = rss_kb(d.pid)
                took = route_events(sub, notify, db, accounts, 2000)
                rss_after = rss_kb(d.pid)
            finally:
                d.stop()
            rows.append((label, start_s, rss_start, rss_after, took / 2000 * 1e6,
                         os.path.getsize(db)))
    finally:
        prosody.stop()
    return rows


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build')
    n = 1000000
    if '--nodes' in sys.argv:
        n = int(sys.argv[sys.argv.index('--nodes') + 1])
    work = tempfile.mkdtemp(prefix='mailpubsub-bench-')
    os.chmod(work, 0o755)
    try:
        rows = bench_ingest(build, work)
        print('\n%-62s %12s %9s %9s %9s' % ('ingest (tests/cyrus_sender, real datagrams)',
                                        'events/s', 'p99.9 ms', 'max ms', 'ratio'))
        peer = rows[0][1]
        for label, rate, res in rows:
            ratio = '%8.2fx' % (rate / peer) if 'full speed' in label else '%9s' % '-'
            print('%-62s %12.0f %9.3f %9.3f %s' % (label, rate, res['p999_ms'],
                                                 res['max_ms'], ratio))
        if '--ingest-only' in sys.argv:
            return
        srows = bench_scale(build, work, n)
        print('\n%-40s %9s %10s %10s %14s %8s %10s' % (
            'scale', 'start s', 'RSS MiB', 'RSS after', 'us per event', 'ratio', 'store MiB'))
        base = srows[0][4]
        for label, start_s, r0, r1, us, size in srows:
            print('%-40s %9.2f %10.1f %10.1f %14.1f %7.2fx %10.0f' % (
                label, start_s, r0 / 1024, r1 / 1024, us, us / base, size / 2**20))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
