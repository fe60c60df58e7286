"""Benchmark: end to end, Cyrus LMTP delivery -> XMPP client notification,
through a private Cyrus, mailpubsubd and Prosody; unloaded (one delivery at
a time) and under load (deliveries at 200/s from parallel LMTP sessions).

    /usr/bin/python3 bench/e2e.py BUILD_DIR

Latency is from the start of the LMTP session to the notification's
arrival at the client (Debian's slixmpp); the client's own cost is
measured with a peer row: the same client receiving messages another
client sends it through the same Prosody.
"""
import os
import re
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))

from harness import make_message, wait_until  # noqa: E402
from stack import (Stack, event_items, iq_type, items_iq,  # noqa: E402
                   service_jid, subscribe_iq)

SVC = service_jid('alice')


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build')
    os.environ.setdefault('MAILPUBSUBD', os.path.join(build, 'mailpubsubd'))
    work = tempfile.mkdtemp(prefix='mailpubsub-bench-')
    os.chmod(work, 0o755)
    stack = Stack(work, config={'log': {'level': 'info'}})
    try:
        stack.start()
        alice = stack.client('alice')
        bob = stack.client('bob')
        stack.cyrus.deliver('alice', make_message())
        wait_until(lambda: iq_type(alice.iq(items_iq(SVC, 'INBOX'))) == 'result', 10)
        assert iq_type(alice.iq(subscribe_iq(SVC, 'INBOX', 'alice@localhost', {
            'mailpubsub#events': ['MessageNew']}))) == 'result'
        time.sleep(0.5)
        arrivals = {}
        stop = threading.Event()

        def receive():
            while not stop.is_set():
                try:
                    m = alice.wait_message(lambda m: True, 0.2)
                except TimeoutError:
                    continue
                now = time.monotonic()
                items = event_items(m)
                if items is not None:
                    for _, p in items[1]:
                        # the subject, from Cyrus's envelope parameter
                        for ext in p.iter('{urn:mailpubsub:event:0}extension'):
                            if ext.get('name') == 'vnd.cmu.envelope':
                                found = re.search(r'"((?:e2e|load) \d+)"', ext.text or '')
                                if found:
                                    arrivals[found.group(1)] = now
                else:
                    body = m.findtext('{jabber:client}body')
                    if body and body.startswith('peer '):
                        arrivals[body] = now
        t = threading.Thread(target=receive)
        t.start()
        rows = []
        try:
            # peer: the client's and Prosody's share, one chat message at a time
            lat = []
            for i in range(100):
                key = 'peer %d' % i
                t0 = time.monotonic()
                bob.send_message('alice@localhost', key)
                wait_until(lambda: key in arrivals, 10, interval=0.001)
                lat.append(arrivals[key] - t0)
            rows.append(('peer: chat message client -> Prosody -> client', lat))
            # unloaded
            lat = []
            for i in range(100):
                key = 'e2e %d' % i
                t0 = time.monotonic()
                stack.cyrus.deliver('alice', make_message(subject=key))
                wait_until(lambda: key in arrivals, 10, interval=0.001)
                lat.append(arrivals[key] - t0)
            rows.append(('LMTP delivery -> client, unloaded', lat))
            # 200 deliveries/s for 5 s from 4 parallel LMTP senders
            starts = {}
            t_begin = time.monotonic()

            def send(k, n, rate):
                period = 1.0 / rate
                t_next = time.monotonic()
                for i in range(n):
                    delay = t_next - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    key = 'load %d' % (k * n + i)
                    starts[key] = time.monotonic()
                    stack.cyrus.deliver('alice', make_message(subject=key))
                    t_next += period
            senders = [threading.Thread(target=send, args=(k, 250, 50)) for k in range(4)]
            for s in senders:
                s.start()
            for s in senders:
                s.join()
            sent_s = time.monotonic() - t_begin
            wait_until(lambda: all(k in arrivals for k in starts), 60)
            rows.append(('LMTP delivery -> client, 200 deliveries/s offered',
                         [arrivals[k] - starts[k] for k in starts]))
        finally:
            stop.set()
            t.join()
        print('\n%-52s %6s %9s %9s %9s' % ('end to end', 'n', 'p50 ms', 'p99 ms', 'max ms'))
        for label, lat in rows:
            print('%-52s %6d %9.1f %9.1f %9.1f' % (label, len(lat), pct(lat, 0.5) * 1000,
                                                 pct(lat, 0.99) * 1000, max(lat) * 1000))
        print('(load: %d deliveries in %.1f s = %.0f/s achieved, from 4 LMTP '
              'clients)' % (len(starts), sent_s, len(starts) / sent_s))
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
