"""Benchmark: the message bus (issue 17), against a private RabbitMQ 3.10.

    /usr/bin/python3 bench/bus.py BUILD_DIR [--events N] [--latency-samples K]

Throughput: a journal of N events (default 100k) written beforehand, then
mailpubsubd started with [bus]: events/s from its broker connection to the
bus watermark reaching the last event (every one accepted by the broker;
the watermark is written every 200 ms, so this undercounts by at most
that). Two event sizes: a plain MessageNew (~250 bytes of body), and one
carrying 2 KB of content in the event (RFC 5423 messageContent; [bus]
content = none, so no IMAP). Beside each, the peer in the same run: a plain
Qpid Proton C sender (bench/proton_send, its own proactor) sending the same
number of messages of the same shape, durable, with the same window, to
the same broker. The broker's CPU (and mailpubsubd's) over each run, as a
share of one core.

Latency: a private Cyrus + Prosody + mailpubsubd with [bus]; K messages
delivered one at a time over LMTP, each timed from the LMTP delivery to its
MessageNew reaching a python3-qpid-proton consumer (unloaded).
"""
import argparse
import resource
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))

from harness import Daemon, make_message, wait_until  # noqa: E402
from rabbitmq import USER, Consumer, RabbitMQ, wait_ready  # noqa: E402

WINDOW = 1000


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cpu_of(pids):
    return sum(cpu_seconds(p) for p in pids)


def event(i, content):
    ev = {'event': 'MessageNew', 'user': 'alice',
          'uri': 'imap://alice@localhost/INBOX;UIDVALIDITY=42/;UID=%d' % (i + 1),
          'messages': i + 1, 'uidnext': i + 2, 'messageSize': 2048,
          'timestamp': '2026-11-23T10:00:00.000+00:00'}
    if content:
        ev['messageContent'] = ('x' * 76 + '\r\n') * 26 + 'x' * 20
    return ev


def write_conf(work, db, broker, creds, address, bus):
    conf = os.path.join(work, 'bus-bench.conf')
    with open(conf, 'w') as f:
        f.write('[component]\nhost = 127.0.0.1\nport = 1\ndomain = events.localhost\n'
                'secret = x\n[store]\npath = %s\nfull_sync = yes\n[log]\nlevel = info\n'
                % db)
        if bus:
            f.write('[bus]\nurls = %s\ncredentials_file = %s\naddress = %s\n'
                    'instance = bench\nwindow = %d\n' % (broker.url, creds, address, WINDOW))
    return conf


def prepare_journal(build, work, db, broker, creds, n, content):
    """A store whose journal holds n events (schema made by mailpubsubd)."""
    conf = write_conf(work, db, broker, creds, None, bus=False)
    d = Daemon(work, [os.path.join(build, 'mailpubsubd'), '-f', '-c', conf], name='prep')
    d.start()
    d.wait_log(r'started', timeout=30)
    d.stop()
    con = sqlite3.connect(db)
    base = int(time.time() * 1e6)
    con.executemany('INSERT INTO journal (received_us, source, type, account, node, json)'
                    ' VALUES (?, ?, ?, ?, ?, ?)',
                    ((base + i, 'json', 'MessageNew', 'alice', 'INBOX',
                      json.dumps(event(i, content), separators=(',', ':')))
                     for i in range(n)))
    con.commit()
    con.close()


def bus_mark(db):
    con = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=10)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'bus_seq'").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def run_mailpubsubd(build, work, broker, creds, n, content, prefix):
    db = os.path.join(work, '%s-bench-%d.db' % (prefix, content))
    prepare_journal(build, work, db, broker, creds, n, content)
    address = '/queue/%s-mps-%d' % (prefix, content)
    conf = write_conf(work, db, broker, creds, address, bus=True)
    d = Daemon(work, [os.path.join(build, 'mailpubsubd'), '-f', '-c', conf],
               name='bus-bench-%s-%d' % (prefix, content))
    beam = broker.beam_pids()
    d.start()
    try:
        d.wait_log(r'amqp: connected', timeout=60)
        t0 = time.monotonic()
        c0, m0 = cpu_of(beam), cpu_seconds(d.pid)
        wait_until(lambda: bus_mark(db) >= n, timeout=600, interval=0.02,
                   what='the bus watermark at %d' % n)
        secs = time.monotonic() - t0
        c1, m1 = cpu_of(beam), cpu_seconds(d.pid)
    finally:
        d.stop()
    broker.ctl('delete_queue', address.rsplit('/', 1)[1], check=False)
    return {'rate': n / secs, 'seconds': secs, 'broker_cpu': (c1 - c0) / secs,
            'own_cpu': (m1 - m0) / secs}


def run_plain(build, work, broker, n, content, prefix):
    bodies = os.path.join(work, 'bodies-%d' % content)
    with open(bodies, 'w') as f:
        for i in range(1000):
            b = event(i, content)
            b.update({'account': 'alice', 'node': 'INBOX', 'uidvalidity': 42, 'seq': i + 1,
                      'received': '2026-11-23T10:00:00.000000Z', 'source': 'json',
                      'instance': 'plain'})
            f.write(json.dumps(b, separators=(',', ':')) + '\n')
    queue = '%s-plain-%d' % (prefix, content)
    beam = broker.beam_pids()
    c0 = cpu_of(beam)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run([os.path.join(build, 'bench', 'proton_send'),
                          '127.0.0.1:%d' % broker.port, '/queue/' + queue, USER,
                          broker.password, bodies, str(n), str(WINDOW)],
                         capture_output=True, text=True, timeout=900, check=True)
    wall = time.monotonic() - t0
    c1 = cpu_of(beam)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = json.loads(out.stdout)
    broker.ctl('delete_queue', queue, check=False)
    return {'rate': n / res['seconds'], 'seconds': res['seconds'],
            'broker_cpu': (c1 - c0) / wall,
            'own_cpu': (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / wall}


def latency(work, samples):
    from stack import Stack
    broker = RabbitMQ(work, name='latency')
    broker.start()
    wait_ready(broker)
    creds = os.path.join(work, 'lat.credentials')
    with open(creds, 'w') as f:
        f.write('%s\n%s\n' % (USER, broker.password))
    os.chmod(creds, 0o600)
    os.chmod(work, 0o755)
    sw = os.path.join(work, 'stack')
    os.makedirs(sw)
    os.chmod(sw, 0o755)
    s = Stack(sw, config={'bus': {'urls': broker.url, 'credentials_file': creds,
                                  'address': '/queue/mailpubsub-latency', 'instance': 'lat'}})
    consumer = Consumer(broker.url, '/queue/mailpubsub-latency', password=broker.password)
    out = []
    try:
        s.start()
        for i in range(samples):
            before = len([m for m in consumer.snapshot()
                          if (m.properties or {}).get('event') == 'MessageNew'])
            t0 = time.monotonic()
            s.cyrus.deliver('alice', make_message(subject='latency %d' % i))
            wait_until(lambda: len([m for m in consumer.snapshot()
                                    if (m.properties or {}).get('event') == 'MessageNew'])
                       > before, timeout=30, interval=0.001, what='the MessageNew')
            out.append((time.monotonic() - t0) * 1000)
            time.sleep(0.2)
    finally:
        consumer.close()
        s.stop()
        broker.stop()
    out.sort()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('build')
    ap.add_argument('--events', type=int, default=100000)
    ap.add_argument('--latency-samples', type=int, default=20)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix='mailpubsub-bus-bench-', dir='/tmp')
    os.chmod(work, 0o755)
    broker = RabbitMQ(work)
    creds = os.path.join(work, 'bus.credentials')
    with open(creds, 'w') as f:
        f.write('%s\n%s\n' % (USER, broker.password))
    os.chmod(creds, 0o600)
    rows = []
    try:
        broker.start()
        wait_ready(broker)
        # Queues named mailpubsub* get examples/rabbitmq/definitions.json's
        # policy (lazy, classic queue version 2), which the README tells an
        # administrator to import; a queue of another name is a plain
        # classic queue, shown once for comparison.
        kinds = os.environ.get('BUS_BENCH_KINDS', 'mailpubsub:0 mailpubsub:1 classic:0')
        for kind in kinds.split():
            prefix, content = kind.split(':')
            content = int(content)
            plain = run_plain(build, work, broker, args.events, content, prefix)
            ours = run_mailpubsubd(build, work, broker, creds, args.events, content, prefix)
            rows.append((prefix, content, ours, plain))
    finally:
        broker.stop()
    lat = latency(work, args.latency_samples)
    shutil.rmtree(work, ignore_errors=True)
    print('\nbus: journal -> broker-accepted, N = %d, window %d, durable, RabbitMQ 3.10'
          % (args.events, WINDOW))
    print('| queue | messages | mailpubsubd events/s | plain Proton C sender msg/s | ratio |'
          ' broker CPU (mailpubsubd run / plain run) | sender CPU (mailpubsubd / plain) |')
    print('|---|---|---|---|---|---|---|')
    for prefix, content, ours, plain in rows:
        print('| %s | %s | %.0f | %.0f | %.2f | %.0f%% / %.0f%% | %.0f%% / %.0f%% |'
              % ('lazy, v2 (examples/rabbitmq policy)' if prefix == 'mailpubsub'
                 else 'classic v1, no policy',
                 '2 KB content in the event' if content else 'no content',
                 ours['rate'], plain['rate'], ours['rate'] / plain['rate'],
                 ours['broker_cpu'] * 100, plain['broker_cpu'] * 100,
                 ours['own_cpu'] * 100, plain['own_cpu'] * 100))
    print('latency Cyrus LMTP delivery -> bus consumer (%d samples, unloaded):'
          ' median %.1f ms, p90 %.1f ms, max %.1f ms'
          % (len(lat), lat[len(lat) // 2], lat[int(len(lat) * 0.9)], lat[-1]))


if __name__ == '__main__':
    main()
