"""The message bus, out (issue 17): every journaled event as one AMQP 1.0
message on a private RabbitMQ 3.10 (examples/rabbitmq/), in journal order,
at least once with a stable message-id, content per [bus] content; through
kill -9 of mailpubsubd, kill -9 of the broker, a broker down at start and
wrong credentials, nothing is lost."""
import base64
import json
import os
import sqlite3
import subprocess
import threading
import time

import pytest

import rabbitmq

from harness import free_port, make_message, wait_until
from rabbitmq import USER, Consumer, RabbitMQ, wait_ready
from stack import Stack, event_items, service_jid, subscribe_iq, iq_type
from test_metrics import scrape, value
from test_status import ctl_path

QUEUE = 'mailpubsub'
ADDRESS = '/queue/' + QUEUE
INSTANCE = 'it-bus'


def write_credentials(workdir, password, user=USER):
    path = os.path.join(workdir, 'bus.credentials')
    with open(path, 'w') as f:
        f.write('%s\n%s\n' % (user, password))
    os.chmod(path, 0o600)
    return path


def bus_stack(workdir, broker, password=None, json_source=False, extra=None, **bus):
    conf = {'urls': broker.url,
            'credentials_file': write_credentials(workdir, password or broker.password),
            'address': ADDRESS, 'instance': INSTANCE, 'reconnect_max': '2'}
    conf.update(bus)
    config = {'bus': conf, 'firehose': {'fetch_attempts': '3'}}
    config.update(extra or {})
    if json_source:
        config['json'] = {'socket': os.path.join(workdir, 'events.sock'),
                          'socket_group': ''}
    return Stack(workdir, config=config)


@pytest.fixture
def broker(workdir):
    yield from rabbitmq.started(workdir)


def journal(stack):
    """[(seq, type)] of the journal, in order."""
    db = sqlite3.connect('file:%s?mode=ro' % stack.db, uri=True, timeout=10)
    try:
        return [(int(s), t) for s, t in
                db.execute('SELECT seq, type FROM journal ORDER BY seq')]
    finally:
        db.close()


def props(m):
    return m.properties or {}


def seqs_of(messages):
    return [props(m)['seq'] for m in messages]


def quiet_journal(stack, quiet=1.5, timeout=60):
    """The journal once nothing was added to it for quiet seconds (Cyrus
    sends a Logout or a modseq bump a little after a session)."""
    last = [journal(stack), time.monotonic()]

    def settled():
        now = journal(stack)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet
    wait_until(settled, timeout=timeout, interval=0.2, what='a quiet journal')
    return last[0]


def check_bus_against_journal(stack, messages, refused=()):
    """Every journaled event (of a quiet journal) is on the bus with its
    message-id; duplicates are identical; first occurrences come in journal
    order. Returns (journaled, on the bus, duplicates)."""
    jr = quiet_journal(stack)
    first = {}
    order = []
    duplicates = 0
    for m in messages:
        seq = props(m)['seq']
        assert m.id == '%s:%d' % (INSTANCE, seq)
        assert m.durable
        body = m.body if isinstance(m.body, bytes) else bytes(m.body)
        if seq in first:
            duplicates += 1
            assert first[seq] == body, 'a duplicate differs from the first copy'
            continue
        first[seq] = body
        order.append(seq)
    # an event the broker refused comes after the ones sent behind it
    in_order = [q for q in order if q not in refused]
    assert in_order == sorted(in_order), 'first copies out of journal order'
    missing = [s for s, _ in jr if s not in first]
    assert not missing, 'journaled, never on the bus: %r' % missing[:20]
    for s, t in jr:
        assert props_of_seq(messages, s)['event'] == t
    return len(jr), len(first), duplicates


def props_of_seq(messages, seq):
    for m in messages:
        if props(m).get('seq') == seq:
            return props(m)
    raise KeyError(seq)


def body_json(m):
    body = m.body if isinstance(m.body, bytes) else bytes(m.body)
    return json.loads(body)


def imap_bytes(stack, user, uid, mailbox='INBOX'):
    m = stack.cyrus.imap(user)
    try:
        m.select(mailbox, readonly=True)
        typ, data = m.uid('FETCH', str(uid), '(BODY.PEEK[])')
        assert typ == 'OK' and data[0] is not None, data
        return data[0][1]
    finally:
        m.logout()


def wait_bus_caught_up(stack, consumer, timeout=60):
    """Until every journaled event is on the bus (and the journal quiet)."""
    jr = quiet_journal(stack)

    def done():
        have = set(seqs_of(consumer.snapshot()))
        return all(s in have for s, _ in jr)
    wait_until(done, timeout=timeout, interval=0.3, what='bus caught up with the journal')


def test_scripted_session_in_order_with_content(workdir, broker):
    """deliver, read, flag, move, rename, expunge: every event on the bus in
    journal order, with properties, JSON body and content byte-identical to
    IMAP (full)."""
    s = bus_stack(workdir, broker, content='full')
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    try:
        s.start()
        s.cyrus.deliver('alice', make_message(subject='first', body='one\r\n' * 50))
        s.cyrus.deliver('alice', make_message(subject='second', body='two\r\n'))
        raw = {uid: imap_bytes(s, 'alice', uid) for uid in (1, 2)}
        m = s.cyrus.imap('alice')
        m.select('INBOX')
        m.uid('STORE', '1', '+FLAGS', '(\\Seen)')
        m.uid('STORE', '2', '+FLAGS', '(\\Flagged)')
        m.create('INBOX/Work')
        m.uid('MOVE', '2', 'INBOX/Work')
        m.rename('INBOX/Work', 'INBOX/Done')
        m.uid('STORE', '1', '+FLAGS', '(\\Deleted)')
        m.expunge()
        m.logout()
        wanted = {'MessageNew', 'MessageRead', 'FlagsSet', 'MailboxCreate',
                  'vnd.cmu.MessageMove', 'MailboxRename', 'MessageExpunge'}
        wait_until(lambda: wanted <= {t for _, t in journal(s)}, timeout=30,
                   what='the session journaled')
        wait_bus_caught_up(s, consumer)
        msgs = consumer.snapshot()
        journaled, on_bus, dups = check_bus_against_journal(s, msgs)
        assert dups == 0 and on_bus == journaled
        assert seqs_of(msgs) == [seq for seq, _ in journal(s)][:len(msgs)]
        news = [m for m in msgs if props(m)['event'] == 'MessageNew']
        assert len(news) == 2
        for m in news:
            p = props(m)
            assert p['account'] == 'alice' and p['node'] == 'INBOX'
            assert p['source'] == 'cyrus' and p['instance'] == INSTANCE
            assert m.content_type == 'application/json'
            b = body_json(m)
            assert b['event'] == 'MessageNew' and b['seq'] == p['seq']
            assert b['account'] == 'alice' and b['node'] == 'INBOX'
            assert b['uidvalidity'] > 0 and 'received' in b and 'uri' in b
            c = b['content']
            assert c['part'] == 'full' and c['encoding'] == 'base64'
            uid = int(b['uri'].rsplit('UID=', 1)[1])
            assert base64.b64decode(c['data']) == raw[uid]
            assert c['size'] == len(raw[uid])
        # the moved message carries its bytes too (retrieved in INBOX/Work,
        # or where the rename took it)
        move = [body_json(m) for m in msgs if props(m)['event'] == 'vnd.cmu.MessageMove']
        assert len(move) == 1 and base64.b64decode(move[0]['content']['data']) == raw[2]
        rename = [m for m in msgs if props(m)['event'] == 'MailboxRename']
        assert props(rename[0])['node'] == 'INBOX/Done'
    finally:
        consumer.close()
        s.stop()


def test_over_the_limit_says_so(workdir, broker):
    """A message bigger than [bus] content_max: its content stays out, the
    bus message says its size and how to fetch it; a small one is inline."""
    s = bus_stack(workdir, broker, content='full', content_max='2000')
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    try:
        s.start()
        s.cyrus.deliver('alice', make_message(subject='small', body='x' * 70 + '\r\n'))
        s.cyrus.deliver('alice', make_message(subject='huge', body=('z' * 78 + '\r\n') * 100))
        wait_until(lambda: sum(1 for _, t in journal(s) if t == 'MessageNew') == 2,
                   timeout=30, what='two deliveries journaled')
        wait_bus_caught_up(s, consumer)
        news = [body_json(m) for m in consumer.snapshot()
                if props(m)['event'] == 'MessageNew']
        small, big = news
        assert base64.b64decode(small['content']['data']) == imap_bytes(s, 'alice', 1)
        c = big['content']
        raw = imap_bytes(s, 'alice', 2)
        assert 'data' not in c and c['size'] == len(raw) > 2000
        assert 'content_max' in c['omitted']
        assert c['fetch']['uid'] == 2 and c['fetch']['account'] == 'alice'
        assert c['fetch']['command'] == 'UID FETCH 2 BODY.PEEK[]'
    finally:
        consumer.close()
        s.stop()


def test_event_keys_never_repeat_ours(workdir, broker):
    """The body is the journaled text with our keys added. A sender may put
    those keys in its event, written plainly or with escapes: the body must
    still be one JSON object with each key once, ours winning; an ordinary
    event's body keeps every parameter as it came."""
    s = bus_stack(workdir, broker, json_source=True)
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    sock = os.path.join(workdir, 'events.sock')
    plain = json_event(0)
    plain['vnd.example.note'] = 'caf\u00e9 "quoted" \\ \r\n'
    hostile = [
        dict(json_event(1), seq=-1, account='mallory', instance='evil'),
        dict(json_event(2), received='never', content={'data': 'forged'}),
    ]
    try:
        s.start()
        lines = [json.dumps(plain), json.dumps(hostile[0]), json.dumps(hostile[1]),
                 # the same key as ours, spelled with an escape
                 json.dumps(json_event(3))[:-1] + ', "s\\u0065q": "escaped"}']
        for line in lines:
            ack = send_json_line(sock, line)
            assert ack['ok'], (line, ack)
        wait_until(lambda: len([m for m in consumer.snapshot()
                                if props(m).get('source') == 'json']) >= 4,
                   timeout=60, what='the four events on the bus')
        bodies = {}
        for m in consumer.snapshot():
            if props(m).get('source') != 'json':
                continue    # Cyrus's own events of the stack's set-up
            raw = m.body if isinstance(m.body, bytes) else bytes(m.body)

            def no_repeat(pairs):
                keys = [k for k, _ in pairs]
                assert len(keys) == len(set(keys)), keys
                return dict(pairs)
            b = json.loads(raw, object_pairs_hook=no_repeat)
            bodies[b['uri']] = (b, props(m))
        by_uid = {int(u.rsplit('=', 1)[1]): v for u, v in bodies.items()}
        for uid in (1, 2, 3, 4):
            b, p = by_uid[uid]
            assert b['seq'] == p['seq'] and isinstance(b['seq'], int) and b['seq'] > 0
            assert b['account'] == 'alice' and b['instance'] == INSTANCE
            assert b['source'] == 'json' and b['received'] != 'never'
            assert 'content' not in b
        assert by_uid[1][0]['vnd.example.note'] == plain['vnd.example.note']
        assert by_uid[1][0]['messages'] == 1
    finally:
        consumer.close()
        s.stop()


def send_json_line(path, line):
    import socket
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    try:
        c.connect(path)
        c.sendall(line.encode() + b'\n')
        return json.loads(c.makefile('rb').readline())
    finally:
        c.close()


def json_event(i):
    return {'event': 'MessageNew', 'user': 'alice',
            'uri': 'imap://alice@localhost/INBOX;UIDVALIDITY=42/;UID=%d' % (i + 1),
            'messages': i + 1, 'timestamp': '2026-11-23T10:00:00.000+00:00'}


class Feeder:
    """Sends generic-source events at about rate per second from a thread,
    counting what mailpubsubd acknowledged (journaled); reconnects when the
    daemon goes away."""

    def __init__(self, path, rate=2000, total=None):
        import socket
        self.socket_mod = socket
        self.path = path
        self.rate = rate
        self.total = total
        self.acked = 0
        self.sent = 0
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def connect(self):
        s = self.socket_mod.socket(self.socket_mod.AF_UNIX, self.socket_mod.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.path)
        return s, s.makefile('rb')

    def run(self):
        batch = 20
        i = 0
        conn = None
        while not self.stop_flag and (self.total is None or i < self.total):
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = self.connect()
                sock, rfile = conn
                lines = b''.join(json.dumps(json_event(i + k)).encode() + b'\n'
                                 for k in range(batch))
                sock.sendall(lines)
                self.sent += batch
                for _ in range(batch):
                    ack = json.loads(rfile.readline())
                    assert ack['ok']
                    self.acked += 1
                i += batch
            except (OSError, ValueError):
                conn = None     # the daemon went: what was not acked is resent
                time.sleep(0.1)
                continue
            spent = time.monotonic() - t0
            if spent < batch / self.rate:
                time.sleep(batch / self.rate - spent)

    def stop(self):
        self.stop_flag = True
        self.thread.join(timeout=30)


def report(name, feeder, journaled, on_bus, duplicates):
    print('\n%s: events sent %d, acknowledged %d, journaled %d, on the bus %d,'
          ' duplicates %d' % (name, feeder.sent, feeder.acked, journaled, on_bus,
                              duplicates))


def test_kill9_of_the_daemon_at_2k_per_second(workdir, broker):
    """kill -9 of mailpubsubd while events come at ~2k/s: after its restart
    every journaled event reaches the bus; duplicates carry the same
    message-id (and body)."""
    s = bus_stack(workdir, broker, json_source=True)
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    try:
        s.start()
        feeder = Feeder(os.path.join(workdir, 'events.sock'), rate=2000)
        wait_until(lambda: feeder.acked >= 3000, timeout=60, what='3000 events acked')
        wait_until(lambda: consumer.count() >= 1000, timeout=60, what='bus flowing')
        s.daemon.kill(9)
        s.daemon.wait()
        s.daemon = None
        s.start_daemon()
        wait_until(lambda: feeder.acked >= 6000, timeout=60, what='6000 events acked')
        feeder.stop()
        wait_bus_caught_up(s, consumer, timeout=120)
        journaled, on_bus, dups = check_bus_against_journal(s, consumer.snapshot())
        report('daemon kill -9', feeder, journaled, on_bus, dups)
        assert journaled >= feeder.acked
    finally:
        consumer.close()
        s.stop()


def test_kill9_of_the_broker_and_restart(workdir, broker):
    """kill -9 of RabbitMQ mid-stream, restarted: nothing lost, the first
    copies in journal order."""
    s = bus_stack(workdir, broker, json_source=True)
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    try:
        s.start()
        feeder = Feeder(os.path.join(workdir, 'events.sock'), rate=1000)
        wait_until(lambda: consumer.count() >= 1000, timeout=60, what='bus flowing')
        broker.kill9()
        s.daemon.wait_log(r'amqp: .*retrying', timeout=30)
        time.sleep(1)
        broker.start()
        wait_ready(broker)
        wait_until(lambda: feeder.acked >= 5000, timeout=90, what='5000 events acked')
        feeder.stop()
        wait_bus_caught_up(s, consumer, timeout=120)
        journaled, on_bus, dups = check_bus_against_journal(s, consumer.snapshot())
        report('broker kill -9', feeder, journaled, on_bus, dups)
        assert journaled >= feeder.acked
    finally:
        consumer.close()
        s.stop()


def subscribe_inbox(stack, user):
    c = stack.client(user)
    reply = c.iq(subscribe_iq(service_jid(user), 'INBOX', '%s@localhost' % user))
    assert iq_type(reply) == 'result'
    return c


def test_broker_down_at_start(workdir):
    """No broker when mailpubsubd starts: XMPP subscribers are served as
    ever, the journal keeps the backlog, and the bus gets all of it in order
    once the broker is there."""
    broker = RabbitMQ(workdir)
    s = bus_stack(workdir, broker)
    consumer = None
    try:
        s.start()
        alice = subscribe_inbox(s, 'alice')
        for i in range(3):
            s.cyrus.deliver('alice', make_message(subject='while down %d' % i))
            alice.wait_message(lambda m: any(p.get('type') == 'MessageNew'
                                             for _, p in (event_items(m) or (None, []))[1]), 15)
        s.daemon.wait_log(r'amqp: amqp://127\.0\.0\.1:%d: .*refused.*retrying' % broker.port,
                          timeout=30)
        broker.start()
        wait_ready(broker)
        consumer = Consumer(broker.url, ADDRESS, password=broker.password)
        wait_bus_caught_up(s, consumer)
        journaled, on_bus, dups = check_bus_against_journal(s, consumer.snapshot())
        assert on_bus == journaled and dups == 0
        assert seqs_of(consumer.snapshot()) == [q for q, _ in journal(s)][:on_bus]
    finally:
        if consumer is not None:
            consumer.close()
        s.stop()
        broker.stop()


def test_wrong_credentials(workdir, broker):
    """A wrong password: a clear error in the log, retries, nothing lost once
    the broker takes it."""
    s = bus_stack(workdir, broker, password='not-the-password')
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    try:
        s.start()
        s.cyrus.deliver('alice', make_message(subject='held back'))
        s.daemon.wait_log(r'amqp: .*amqp:unauthorized-access.*retrying', timeout=30)
        s.daemon.wait_log(r'amqp: .*amqp:unauthorized-access.*retrying', timeout=30)
        assert consumer.count() == 0
        # the administrator sets the broker to the password mailpubsubd has
        broker.ctl('change_password', USER, 'not-the-password')
        wait_bus_caught_up(s, consumer)
        journaled, on_bus, dups = check_bus_against_journal(s, consumer.snapshot())
        assert on_bus == journaled and dups == 0
        assert 'MessageNew' in [props(m)['event'] for m in consumer.snapshot()]
    finally:
        consumer.close()
        s.stop()


def test_a_full_queue_loses_nothing(workdir, broker):
    """A queue limited to 5 messages that refuses publishes beyond
    (overflow reject-publish): RabbitMQ 3.10's AMQP 1.0 plugin does not
    answer that with a rejected outcome, its session process crashes on the
    nack (function_clause in rabbit_amqp1_0_session_process) and the
    connection is reset. mailpubsubd reconnects with back-off and sends
    again from the watermark; once the limit is lifted every event
    arrives, first copies in journal order."""
    # above the example's policy for mailpubsub* queues (one policy applies)
    broker.ctl('set_policy', '--apply-to', 'queues', '--priority', '10', 'limit',
               '^%s$' % QUEUE, '{"max-length": 5, "overflow": "reject-publish"}')
    s = bus_stack(workdir, broker, json_source=True)
    consumer = None
    try:
        s.start()
        feeder = Feeder(os.path.join(workdir, 'events.sock'), rate=500, total=100)
        for _ in range(2):
            s.daemon.wait_log(r'amqp: .*connection reset by peer \(was connected\);'
                              r' retrying in \d+ ms', timeout=60)
        feeder.thread.join(timeout=60)
        assert broker.queue_length(QUEUE) == 5
        broker.ctl('clear_policy', 'limit')
        consumer = Consumer(broker.url, ADDRESS, password=broker.password)
        wait_bus_caught_up(s, consumer, timeout=120)
        journaled, on_bus, dups = check_bus_against_journal(s, consumer.snapshot())
        report('full queue', feeder, journaled, on_bus, dups)
        assert journaled >= 100
    finally:
        if consumer is not None:
            consumer.close()
        s.stop()


class RefusingPeer:
    """An AMQP 1.0 listener (python3-qpid-proton) standing in for a broker
    that answers rejected, released and modified, which RabbitMQ 3.10 never
    does: the first copy of each seq in refuse gets refuse[seq] as its
    outcome, everything else is accepted and kept."""

    def __init__(self, refuse):
        from proton.handlers import MessagingHandler
        from proton.reactor import Container
        from harness import free_port
        self.port = free_port()
        self.refuse = dict(refuse)
        self.kept = []
        self.outcomes = []
        self.lock = threading.Lock()
        outer = self

        class Handler(MessagingHandler):
            def __init__(self):
                super().__init__(auto_accept=False, prefetch=100)

            def on_start(self, event):
                self.acceptor = event.container.listen('127.0.0.1:%d' % outer.port)

            def on_message(self, event):
                seq = event.message.properties['seq']
                with outer.lock:
                    how = outer.refuse.pop(seq, 'accept')
                    outer.outcomes.append((seq, how))
                    if how == 'accept':
                        outer.kept.append(event.message)
                if how == 'accept':
                    self.accept(event.delivery)
                elif how == 'reject':
                    self.reject(event.delivery)
                elif how == 'release':
                    self.release(event.delivery, delivered=False)
                else:
                    self.release(event.delivery, delivered=True)   # modified

        self.container = Container(Handler())
        self.thread = threading.Thread(target=self.container.run, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return 'amqp://127.0.0.1:%d' % self.port

    def snapshot(self):
        with self.lock:
            return list(self.kept)

    def close(self):
        self.container.stop()
        self.thread.join(timeout=10)


def test_refusals_are_logged_and_sent_again(workdir):
    """rejected, released and modified outcomes: each logged with the
    outcome, then everything after the watermark sent again after a
    back-off; in the end every event is kept once or more, with the same
    message-id, first copies in journal order."""
    peer = RefusingPeer({3: 'reject', 5: 'release', 8: 'modify'})
    port = free_port()
    s = Stack(workdir, config={'bus': {'urls': peer.url, 'address': ADDRESS,
                                       'instance': INSTANCE, 'durable': 'no'},
                               'json': {'socket': os.path.join(workdir, 'events.sock'),
                                        'socket_group': ''},
                               'control': {'socket': os.path.join(workdir, 'control.sock')},
                               'metrics': {'listen': '127.0.0.1:%d' % port}})
    s.metrics_port = port
    try:
        s.start()
        feeder = Feeder(os.path.join(workdir, 'events.sock'), rate=200, total=40)
        s.daemon.wait_log(r'bus: #3 rejected by the broker', timeout=60)
        s.daemon.wait_log(r'bus: sending again from #\d+ in \d+ ms', timeout=30)
        s.daemon.wait_log(r'bus: #5 released by the broker', timeout=60)
        s.daemon.wait_log(r'bus: #8 modified by the broker', timeout=60)
        feeder.thread.join(timeout=60)

        class Kept:
            def snapshot(self):
                return peer.snapshot()
        wait_bus_caught_up(s, Kept())
        journaled, on_bus, dups = check_bus_against_journal(s, peer.snapshot(),
                                                            refused=(3, 5, 8))
        report('refusals', feeder, journaled, on_bus, dups)
        for refusal in ((3, 'reject'), (5, 'release'), (8, 'modify')):
            assert refusal in peer.outcomes
        # status and metrics count what the peer saw: every message sent
        # got an outcome, 3 of them refusals; every resend is a send beyond
        # the first copy of each journaled event
        st, m = settled_status(s, lambda b: b['backlog'] == 0 and not b['backing_off'])
        head = st['journal_head']
        sends, kept = len(peer.outcomes), len(peer.snapshot())
        assert {k: st[k] for k in ('refused', 'sent', 'accepted', 'watermark')} == {
            'refused': 3, 'sent': sends, 'accepted': kept, 'watermark': head}
        assert sends == head + st['resent'] and st['resent'] >= 3
        assert st['connections'] == 1 and st['state'] == 'connected'
        assert {k: m[k] for k in ('refused', 'sent', 'accepted', 'resent',
                                  'backlog_events')} == {
            'refused': 3, 'sent': sends, 'accepted': kept, 'resent': st['resent'],
            'backlog_events': 0}
        print('refusals: %d sent, %d accepted, %d refused, %d resent'
              % (sends, kept, 3, st['resent']))
    finally:
        s.stop()
        peer.close()


# ---- operations: the producer in `mailpubsubctl status` and /metrics ----

def ops_stack(workdir, broker):
    port = free_port()
    s = bus_stack(workdir, broker, json_source=True, extra={
        'control': {'socket': os.path.join(workdir, 'control.sock')},
        'metrics': {'listen': '127.0.0.1:%d' % port}})
    s.metrics_port = port
    return s


def ctl_status(stack, text=False):
    args = [ctl_path(), '-c', stack.conf, 'status'] + ([] if text else ['--json'])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout if text else json.loads(proc.stdout)


def bus_status(stack):
    return ctl_status(stack)['bus']


def bus_metrics(stack):
    text = scrape(stack.metrics_port)[2]
    lint = subprocess.run(['promtool', 'check', 'metrics'], input=text,
                          capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = {o: value(text, 'mailpubsub_bus_out_messages_total', outcome=o)
           for o in ('sent', 'accepted', 'refused', 'resent')}
    for name in ('connected', 'watermark_sequence', 'backlog_events',
                 'connections_total', 'disconnects_total', 'connect_failures_total',
                 'last_change_timestamp_seconds'):
        out[name] = value(text, 'mailpubsub_bus_out_' + name)
    return out


def bus_lines(text):
    """The producer's lines of the text status."""
    lines = text.splitlines()
    start = [i for i, ln in enumerate(lines) if ln.startswith('Bus:')][0]
    end = start + 1
    while end < len(lines) and lines[end].startswith('  '):
        end += 1
    return '\n'.join(lines[start:end])


def feed(stack, n):
    """n events through the generic source, every one acknowledged
    (journaled) before this returns."""
    feeder = Feeder(os.path.join(stack.workdir, 'events.sock'), rate=1000, total=n)
    feeder.thread.join(timeout=60)
    assert feeder.acked == n
    return feeder


def settled_status(stack, want):
    """The producer's status once the journal is quiet and want(status)
    holds, the same before and after a scrape (nothing moving)."""
    def look():
        head = quiet_journal(stack)[-1][0]
        a = bus_status(stack)
        m = bus_metrics(stack)
        b = bus_status(stack)
        a.pop('for_seconds')
        b.pop('for_seconds')
        if a != b or a['journal_head'] != head or not want(a):
            return None
        return a, m
    return wait_until(look, 60, interval=0.5, what='the bus producer to settle')


def test_producer_counters_in_status_and_metrics(workdir, broker):
    """After a known number of events, `mailpubsubctl status` (JSON and
    text) and /metrics show exactly what the producer did: every journaled
    event sent once and accepted, watermark = journal head, backlog 0.
    Broker stopped: state connecting, the last error, a disconnect, failed
    attempts, and a backlog that grows by what is journaled meanwhile;
    broker back: connected again, the backlog worked off, nothing resent."""
    s = ops_stack(workdir, broker)
    consumer = Consumer(broker.url, ADDRESS, password=broker.password)
    try:
        s.start()
        feed(s, 60)
        wait_bus_caught_up(s, consumer)
        up, m = settled_status(s, lambda b: b['backlog'] == 0)
        head = up['journal_head']
        assert sum(1 for _, t in journal(s)) == head   # seqs from 1, no gaps
        assert sorted(seqs_of(consumer.snapshot())) == list(range(1, head + 1))
        assert {k: up[k] for k in ('state', 'address', 'urls', 'broker', 'watermark',
                                   'sent_seq', 'backlog', 'sent', 'accepted', 'refused',
                                   'resent', 'backing_off', 'connections', 'disconnects',
                                   'failures')} == {
            'state': 'connected', 'address': ADDRESS, 'urls': broker.url,
            'broker': broker.url, 'watermark': head, 'sent_seq': head, 'backlog': 0,
            'sent': head, 'accepted': head, 'refused': 0, 'resent': 0,
            'backing_off': False, 'connections': 1, 'disconnects': 0, 'failures': 0}
        assert up['last_error'] is None and head >= 60
        changed = m.pop('last_change_timestamp_seconds')
        assert m == {'sent': head, 'accepted': head, 'refused': 0, 'resent': 0,
                     'connected': 1, 'watermark_sequence': head, 'backlog_events': 0,
                     'connections_total': 1, 'disconnects_total': 0,
                     'connect_failures_total': 0}
        assert abs(changed - time.time()) < 600
        text = ctl_status(s, text=True)
        assert 'Bus:          %s connected to %s since' % (ADDRESS, broker.url) in text, text
        assert '  watermark %d, last sent %d, journal head %d, backlog 0\n' % (
            head, head, head) in text, text
        assert '  %d sent, %d accepted, 0 refused, 0 resent\n' % (head, head) in text, text
        print('\n' + bus_lines(text))

        # the broker goes away: the producer says so and the journal keeps
        # what comes meanwhile
        consumer.close()
        consumer = None
        broker.stop()
        down = wait_until(lambda: (lambda b: b if b['state'] == 'connecting' and
                                   b['failures'] >= 1 else None)(bus_status(s)),
                          30, what='the producer to see the broker gone')
        assert down['disconnects'] == 1 and down['connections'] == 1
        assert str(broker.port) in down['last_error'], down['last_error']
        assert down['watermark'] == head and down['accepted'] == head
        feed(s, 40)
        down, m = settled_status(s, lambda b: b['backlog'] >= 40)
        head2 = down['journal_head']
        assert down['backlog'] == head2 - head and down['watermark'] == head
        assert down['state'] == 'connecting' and down['last_error']
        assert down['sent'] == down['accepted'] == head and down['refused'] == 0
        assert m['connected'] == 0 and m['backlog_events'] == head2 - head
        assert m['watermark_sequence'] == head and m['disconnects_total'] == 1
        assert m['connect_failures_total'] == down['failures'] >= 1
        assert m['last_change_timestamp_seconds'] >= changed
        text = ctl_status(s, text=True)
        assert 'Bus:          %s CONNECTING to' % ADDRESS in text, text
        assert '  last error: %s' % down['last_error'] in text, text
        assert 'backlog %d' % (head2 - head) in text, text
        print(bus_lines(text))

        # back: caught up, every event sent once
        broker.start()
        wait_ready(broker)
        consumer = Consumer(broker.url, ADDRESS, password=broker.password)
        back, m = settled_status(s, lambda b: b['state'] == 'connected' and
                                 b['backlog'] == 0)
        head3 = back['journal_head']
        assert head3 >= head2
        assert {k: back[k] for k in ('watermark', 'sent', 'accepted', 'refused', 'resent',
                                     'connections', 'disconnects')} == {
            'watermark': head3, 'sent': head3, 'accepted': head3, 'refused': 0,
            'resent': 0, 'connections': 2, 'disconnects': 1}
        assert back['last_error'] is None
        assert m['connected'] == 1 and m['backlog_events'] == 0
        assert m['sent'] == m['accepted'] == head3 and m['connections_total'] == 2
        # the first consumer took 1..head before the broker stopped
        consumer.wait_count(head3 - head)
        time.sleep(1)
        assert seqs_of(consumer.snapshot()) == list(range(head + 1, head3 + 1))
    finally:
        if consumer is not None:
            consumer.close()
        s.stop()
