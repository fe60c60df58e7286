"""Reliability: nothing accepted is lost, gaps Cyrus causes are detected
(issue: reliability; more of it to come)."""
import signal
import sqlite3
import threading
import time

import pytest

from harness import make_message, wait_until
from stack import (NS_ITEM, Stack, child_text, event_items, iq_type, items_iq,
                   mailbox_of, service_jid, subscribe_iq, wait_event)

ALICE_SVC = service_jid('alice')


@pytest.fixture
def stack(workdir):
    s = Stack(workdir, users=('alice',))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def subscribe_all(stack, client):
    stack.cyrus.deliver('alice', make_message(subject='first'))
    wait_until(lambda: iq_type(client.iq(items_iq(ALICE_SVC, 'INBOX'))) == 'result',
               10, what='INBOX node')
    reply = client.iq(subscribe_iq(ALICE_SVC, 'INBOX', 'alice@localhost', {
        'mailpubsub#events': ['MessageNew', 'vnd.mailpubsub.MailboxStatus']}))
    assert iq_type(reply) == 'result'


def collect(client, seen, stop):
    """Every item the client receives: (item id, type, uid)."""
    while not stop.is_set():
        try:
            m = client.wait_message(lambda m: event_items(m) is not None, 0.2)
        except TimeoutError:
            continue
        for item_id, p in event_items(m)[1]:
            box = mailbox_of(p)
            seen.append((item_id, p.get('type'), box.get('uid') if box is not None else None,
                         child_text(p, 'messages')))


def journaled_message_new(db):
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute(
            "SELECT seq FROM journal WHERE type = 'MessageNew' ORDER BY seq")]
    finally:
        con.close()


def test_kill9_while_cyrus_delivers(stack):
    """kill -9 of mailpubsubd during a steady stream of LMTP deliveries
    (~20/s): every event it had journaled reaches the subscriber after the
    restart, each once after dropping repeats by item id, in mailbox order;
    deliveries Cyrus made while it was down show up as a resync marker
    with the store's counts."""
    alice = stack.client('alice')
    subscribe_all(stack, alice)
    seen, stop = [], threading.Event()
    reader = threading.Thread(target=collect, args=(alice, seen, stop))
    reader.start()
    total = 120
    delivered = []

    def deliver():
        for i in range(total):
            stack.cyrus.deliver('alice', make_message(subject='n%d' % i))
            delivered.append(i)
            time.sleep(0.05)
    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        wait_until(lambda: len(delivered) >= total // 3, 30, what='deliveries')
        stack.daemon.kill(signal.SIGKILL)
        stack.daemon.wait(10)
        stack.daemon = None
        time.sleep(0.3)           # Cyrus drops what it sends meanwhile
        stack.start_daemon()
        sender.join(60)
        wait_until(lambda: any(t == 'MessageNew' and u == str(total + 1)
                               for _, t, u, _ in seen), 20, what='last delivery')
        time.sleep(0.5)
    finally:
        stop.set()
        reader.join(5)
        sender.join(5)

    by_id = {}
    for item_id, etype, uid, messages in seen:
        by_id.setdefault(item_id, (etype, uid, messages))
    # every journaled MessageNew reached the client (live or as a repeat)
    missing = [s for s in journaled_message_new(stack.db) if str(s) not in by_id]
    assert missing == []
    # one per item id after dropping repeats, and in order
    first_seen = []
    for item_id, etype, uid, _ in seen:
        if etype == 'MessageNew' and item_id not in first_seen:
            first_seen.append(item_id)
    uids = [int(by_id[i][1]) for i in first_seen]
    assert uids == sorted(uids)
    assert len(set(uids)) == len(uids)
    # what Cyrus dropped while we were down is announced by a resync marker
    if len(uids) < total + 1:
        markers = [v for v in by_id.values() if v[0] == 'vnd.mailpubsub.MailboxStatus']
        assert markers, 'events lost without a resync marker'
    assert 'events were lost' in stack.daemon.log() or len(uids) == total + 1
    print('kill -9: %d deliveries, %d MessageNew seen, %d repeats dropped' % (
        total + 1, len(uids), len(seen) - len(by_id)))


def test_gap_is_detected_and_resynchronised(stack):
    alice = stack.client('alice')
    subscribe_all(stack, alice)
    wait_event(alice, 'MessageNew', 'INBOX')       # the last item
    stack.stop_daemon()
    for _ in range(2):
        stack.cyrus.deliver('alice', make_message())   # lost by Cyrus
    stack.start_daemon()
    stack.cyrus.deliver('alice', make_message())
    _, new = wait_event(alice, 'MessageNew', 'INBOX')
    assert mailbox_of(new).get('uid') == '4'
    _, marker = wait_event(alice, 'vnd.mailpubsub.MailboxStatus', 'INBOX')
    resync = [e.text for e in marker.iter('{%s}extension' % NS_ITEM)
              if e.get('name') == 'vnd.mailpubsub.resync']
    assert resync == ['events lost before this one']
    assert (child_text(marker, 'messages'), child_text(marker, 'unseen')) == ('4', '4')


def c_sender(path, files, rate, seconds):
    """tests/cyrus_sender: sends like Cyrus (a fresh socket per event, a
    blocking sendto) at rate events/s, in C: a Python sender cannot outrun
    the daemon on two cores. Returns its JSON summary."""
    import json
    import os
    import subprocess
    binary = os.environ.get('CYRUS_SENDER', os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build', 'tests',
        'cyrus_sender'))
    out = subprocess.run([binary, path, '%d' % rate, '%.3f' % seconds] + files,
                         capture_output=True, text=True, check=True,
                         timeout=seconds + 120)
    return json.loads(out.stdout)


# The storm runs as an administrator would run a server that storms can
# reach: [component] max_stanza_rate holds what Prosody is handed to 2000
# stanzas/s, below the 2500-2800/s these two subscribers take uncapped on
# a 2-core machine. The sustainable rate is then known before the storm,
# 1000 events/s (one stanza to each subscriber), and the backlog takes a
# predictable ten minutes and a half. Calibrating it instead, with a burst
# before the storm, came out 0.66 to 1.11 times the backlog's own rate
# from run to run: the storm's factor had to cover that, and the suite's
# time with it.
STANZA_RATE = 2000
# 10x is the requirement; the sustained rate comes out at the cap or below
# it (keepalive pings count towards it too), give or take how the Python
# subscribers' arrival stamps lag (3% in a 5 s storm, less in a minute's)
STORM_FACTOR = 10.5


def middle_rate(times):
    """Arrivals per second over the middle half of a list of arrival
    times (buffers fill at first, stragglers trail at the end)."""
    lo, hi = len(times) // 4, 3 * len(times) // 4
    return (hi - lo) / max(times[hi] - times[lo], 1e-3)


@pytest.fixture
def quiet_stack(workdir):
    """The stack with mailpubsubd logging at info, as in production (the
    debug log holds every stanza, which is most of the daemon's work under
    a storm), and its stanzas to Prosody capped at STANZA_RATE."""
    s = Stack(workdir, users=('alice', 'bob'), config={
        'log': {'level': 'info'},
        'component': {'max_stanza_rate': str(STANZA_RATE)}})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_event_storm_never_blocks_cyrus(quiet_stack):
    """A storm of real captured events for MAILPUBSUB_STORM_SECONDS (the
    test command runs the full 60 s in a step of its own; 1.5 by default
    for quick runs), sent like Cyrus sends (a fresh socket per event,
    blocking sendto) at STORM_FACTOR times the publish rate STANZA_RATE
    allows (alice and bob, who may read alice's INBOX, get a notification
    each per event, through Prosody, to Debian's slixmpp).
    The socket is drained all along (the sendto stalls are printed), every
    event is journaled, memory stays bounded while the backlog is worked
    off, and both subscribers get every event. The sustainable rate is the
    one the subscribers see while the backlog is worked off: the storm
    must be at least 10 times that."""
    import glob
    import os
    stack = quiet_stack
    alice, bob = stack.client('alice'), stack.client('bob')
    subscribe_all(stack, alice)
    imap = stack.cyrus.imap('alice')
    assert imap.setacl('INBOX', 'bob', 'lr')[0] == 'OK'
    imap.logout()
    reply = bob.iq(subscribe_iq(ALICE_SVC, 'INBOX', 'bob@localhost', {
        'mailpubsub#events': ['MessageNew', 'vnd.mailpubsub.MailboxStatus']}))
    assert iq_type(reply) == 'result'
    here = os.path.dirname(os.path.abspath(__file__))
    # the captured deliveries into alice's INBOX: each reaches both
    files = [f for f in sorted(glob.glob(os.path.join(here, '..', 'data', 'cyrus',
                                                      '*-MessageNew.dgram')))
             if b'/user/alice;' in open(f, 'rb').read()]
    assert files
    con = sqlite3.connect(stack.db)
    mark = lambda: con.execute(
        "SELECT value FROM meta WHERE key = 'published_seq'").fetchone()[0]
    last = lambda: con.execute("SELECT max(seq) FROM journal").fetchone()[0]
    count = lambda: con.execute(
        "SELECT count(*) FROM journal WHERE type = 'MessageNew'").fetchone()[0]
    rss, stop = [], threading.Event()
    arrivals = {'alice': [], 'bob': []}

    def sample():
        while not stop.is_set():
            rss.append(rss_kb(stack.daemon.pid))
            time.sleep(0.25)

    def receive(client, times):
        while not stop.is_set():
            try:
                m = client.wait_message(lambda m: event_items(m) is not None, 0.2)
            except TimeoutError:
                continue
            times.extend([time.monotonic()] * len(event_items(m)[1]))
    threads = [threading.Thread(target=sample)] + [
        threading.Thread(target=receive, args=(c, arrivals[n]))
        for n, c in (('alice', alice), ('bob', bob))]
    got = lambda since: min(len(arrivals['alice']) - since['alice'],
                            len(arrivals['bob']) - since['bob'])
    try:
        wait_until(lambda: mark() == last(), 30, what='quiet start')
        for t in threads:
            t.start()
        seconds = float(os.environ.get('MAILPUBSUB_STORM_SECONDS', '1.5'))
        subscribers = 2     # stanzas per event
        rate = STORM_FACTOR * STANZA_RATE / subscribers
        before_j = count()
        before = {n: len(a) for n, a in arrivals.items()}
        res = c_sender(stack.notify_socket, files, rate, seconds)
        sent, took = res['sent'], res['seconds']
        t1 = time.monotonic()
        wait_until(lambda: count() - before_j == sent, 120, what='all journaled')
        journaled_s = time.monotonic() - t1
        # both subscribers get every event (no repeats: no reconnection)
        wait_until(lambda: got(before) >= sent, 120 + sent / 150, interval=0.5,
                   what='backlog received')
        backlog_s = time.monotonic() - t1
        wait_until(lambda: mark() == last(), 30, what='published mark')
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(5)
        con.close()
    before_a = before['alice']
    arrivals = arrivals['alice']
    storm = arrivals[before_a:]
    sustained = middle_rate([t for t in storm if t >= t1])
    # where the time went: arrivals per tenth of the storm and backlog
    t0, span = storm[0], storm[-1] - storm[0]
    tenths = [0] * 10
    for t in storm:
        tenths[min(int((t - t0) / max(span, 1e-3) * 10), 9)] += 1
    print('storm: cap %d stanzas/s = %.0f events/s; storm %d events in %.1f s = %.0f/s; '
          'journaled %.1f s and received %.1f s after it: sustained %.0f/s, '
          'storm = %.1f x sustained; arrivals per tenth of %.0f s: %s; '
          'sendto p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms; RSS max %d MiB'
          % (STANZA_RATE, STANZA_RATE / subscribers, sent, took, sent / took, journaled_s, backlog_s, sustained,
             sent / took / sustained, span, tenths, res['p50_ms'], res['p99_ms'],
             res['p999_ms'], res['max_ms'], max(rss) // 1024))
    assert sent / took >= 10 * sustained
    # the cap holds (a bound no slowness of the machine can break)
    assert sustained <= 1.05 * STANZA_RATE / subscribers
    log = stack.daemon.log()
    assert 'events dropped' not in log
    # a server busy with the backlog is slow, not gone: the stream stays
    assert 'component disconnected' not in log
    # what waits for the journal is bounded by [cyrus] queue_max_mb (256
    # MiB of datagrams by default, counted until journaled); the rest of
    # the daemon takes some tens of MiB
    if 'libasan' not in open('/proc/%d/maps' % stack.daemon.pid).read():
        assert max(rss) < (256 + 128) * 1024


def test_xmpp_server_restart_mid_stream(workdir):
    """Prosody restarts while Cyrus delivers and alice is online: the
    daemon reconnects with backoff; meanwhile events wait in the journal
    (the publish watermark stands still, nothing queues in RAM); after the
    reconnect the backlog goes out in order, the subscription is intact and
    alice's new session gets the stream live."""
    import re
    from stack import NS_PUBSUB
    s = Stack(workdir, users=('alice',), config={'store': {'items_per_node': 500}})
    try:
        s.start()
        alice = s.client('alice')
        subscribe_all(s, alice)
        subs = alice.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><subscriptions/>"
                        "</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB))
        subids = [x.get('subid') for x in subs.iter('{%s}subscription' % NS_PUBSUB)]
        total, delivered = 60, []

        def deliver():
            for i in range(total):
                s.cyrus.deliver('alice', make_message(subject='r%d' % i))
                delivered.append(i)
                time.sleep(0.05)
        sender = threading.Thread(target=deliver)
        sender.start()
        wait_until(lambda: len(delivered) >= 15, 30, what='deliveries')
        s.prosody.stop()
        s.daemon.wait_log(r'component disconnected', timeout=15)
        s.clients.remove(alice)          # its stream died with the server
        con = sqlite3.connect(s.db)
        mark = lambda: con.execute(
            "SELECT value FROM meta WHERE key = 'published_seq'").fetchone()[0]
        last = lambda: con.execute("SELECT max(seq) FROM journal").fetchone()[0]
        at_down, journal_at_down = mark(), last()
        time.sleep(3)
        assert last() > journal_at_down, 'Cyrus events journaled meanwhile'
        assert mark() == at_down, 'nothing is published without the server'
        s.prosody.start()
        alice = s.client('alice')
        seen, stop = [], threading.Event()
        reader = threading.Thread(target=collect, args=(alice, seen, stop))
        reader.start()
        try:
            sender.join(60)
            wait_until(lambda: any(t == 'MessageNew' and u == str(total + 1)
                                   for _, t, u, _ in seen), 30,
                       what='the last delivery, live')
        finally:
            stop.set()
            reader.join(5)
        wait_until(lambda: mark() == last(), 30, what='backlog published')
        con.close()
        # the node's items are written as events are published: all of
        # them, in delivery order
        reply = alice.iq(items_iq(ALICE_SVC, 'INBOX'))
        items = [(int(p.get('seq')), int(mailbox_of(p).get('uid')))
                 for p in reply.iter('{%s}mailbox-event' % NS_ITEM)
                 if p.get('type') == 'MessageNew']
        assert [u for _, u in items] == list(range(1, total + 2))
        assert [q for q, _ in items] == sorted(q for q, _ in items)
        # live: from alice's first item on, every delivery, in order, once
        live = []
        for item_id, etype, uid, _ in seen:
            if etype == 'MessageNew' and int(uid) not in live:
                live.append(int(uid))
        assert live == list(range(live[0], total + 2))
        # the same subscription, not a new one
        subs = alice.iq("<iq type='get' to='%s'><pubsub xmlns='%s'><subscriptions/>"
                        "</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB))
        assert [x.get('subid') for x in subs.iter('{%s}subscription' % NS_PUBSUB)] == subids
        # reconnect attempts back off while the server is away
        log = s.daemon.log()
        tries = [float(m.group(1)) for m in re.finditer(
            r'T\d\d:\d\d:(\d\d\.\d+)Z \S+ component \S+: cannot connect', log)]
        assert len(tries) >= 2
        gaps = [round((b - a) % 60, 2) for a, b in zip(tries, tries[1:])]
        assert gaps == sorted(gaps), gaps
        assert log.count('component connected') >= 2
        print('prosody restart: %d attempts while down, gaps %s s; %d items in '
              'order; alice saw uids %d..%d live' % (len(tries), gaps, len(items),
                                                   live[0], live[-1]))
    finally:
        s.stop()


def test_subscription_limit_per_jid(workdir):
    s = Stack(workdir, users=('alice',), config={'pubsub': {'max_subscriptions_per_jid': 5}})
    try:
        s.start()
        alice = s.client('alice')
        imap = s.cyrus.imap('alice')
        for i in range(8):
            imap.create('INBOX/F%d' % i)
        imap.logout()
        wait_until(lambda: iq_type(alice.iq(items_iq(ALICE_SVC, 'INBOX/F7'))) == 'result',
                   10, what='folders')
        from stack import error_of
        results = []
        for i in range(8):
            reply = alice.iq(subscribe_iq(ALICE_SVC, 'INBOX/F%d' % i, 'alice@localhost'))
            results.append(iq_type(reply) if iq_type(reply) == 'result' else error_of(reply))
        assert results[:5] == ['result'] * 5
        assert results[5:] == [('wait', 'policy-violation', 'too-many-subscriptions', None)] * 3
        # subscribing again to one it has is not a new subscription
        assert iq_type(alice.iq(subscribe_iq(ALICE_SVC, 'INBOX/F0', 'alice@localhost'))) == 'result'
    finally:
        s.stop()


def test_secrets_never_logged(stack):
    alice = stack.client('alice')
    subscribe_all(stack, alice)
    log = stack.daemon.log()
    assert stack.prosody.secret not in log
    assert 'password = ' not in log


def test_daemon_under_valgrind_has_no_leaks(workdir):
    """valgrind on the daemon over a short real session: no leak, no error."""
    vlog = workdir + '/valgrind.log'
    s = Stack(workdir, users=('alice',), wrapper=[
        'valgrind', '--leak-check=full', '--errors-for-leak-kinds=definite,indirect',
        '--show-leak-kinds=definite,indirect', '--log-file=' + vlog])
    try:
        s.start()
        alice = s.client('alice')
        subscribe_all(s, alice)
        for _ in range(3):
            s.cyrus.deliver('alice', make_message())
        for _ in range(3):
            wait_event(alice, 'MessageNew', 'INBOX', timeout=20)
        assert s.stop_daemon() == 0
    finally:
        s.stop()
    report = open(vlog).read()
    assert 'ERROR SUMMARY: 0 errors' in report, report[-3000:]
    assert 'definitely lost: 0 bytes' in report or 'All heap blocks were freed' in report \
        or 'definitely lost' not in report, report[-3000:]


def rss_kb(pid):
    return int([l for l in open('/proc/%d/status' % pid)
                if l.startswith('VmRSS')][0].split()[1])


def test_abusive_requests(stack):
    """Odd and hostile requests get XEP-0060 errors; the daemon stays up and
    its memory does not grow with a flood of them."""
    from stack import NS_PUBSUB, error_of
    alice = stack.client('alice')
    subscribe_all(stack, alice)
    jid = 'alice@localhost'
    # invalid JIDs in the request
    for bad in ('@@@', '', 'alice@', '/x', 'a@b@c'):
        reply = alice.iq(subscribe_iq(ALICE_SVC, 'INBOX', bad))
        assert error_of(reply)[:3] == ('modify', 'bad-request', 'invalid-jid'), bad
    # deeply nested garbage inside a pubsub request
    nested = '<x>' * 500 + '</x>' * 500
    reply = alice.iq("<iq type='set' to='%s'><pubsub xmlns='%s'><subscribe node='INBOX' "
                     "jid='%s'/>%s</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB, jid, nested))
    assert iq_type(reply) in ('result', 'error')
    # a big options form: too many values is an invalid form, not a crash
    values = ''.join('<value>MessageNew</value>' for _ in range(5000))
    reply = alice.iq("<iq type='set' to='%s'><pubsub xmlns='%s'><subscribe node='INBOX' "
                     "jid='%s'/><options><x xmlns='jabber:x:data' type='submit'>"
                     "<field var='mailpubsub#events'>%s</field></x></options></pubsub></iq>"
                     % (ALICE_SVC, NS_PUBSUB, jid, values))
    assert error_of(reply)[:3] == ('modify', 'bad-request', 'invalid-options')
    # unknown payloads and namespaces
    assert error_of(alice.iq("<iq type='get' to='%s'><foo xmlns='urn:x'/></iq>"
                             % ALICE_SVC))[:2] == ('cancel', 'service-unavailable')
    assert error_of(alice.iq("<iq type='set' to='%s'><pubsub xmlns='%s'/></iq>"
                             % (ALICE_SVC, NS_PUBSUB)))[:2] == ('modify', 'bad-request')
    # a 7 KB node name: an error at once. libstrophe reads 4 KiB at a time
    # and expat's reparse deferral held such stanzas back until the next
    # bytes came (src/xmpp/expat_stream.c). Prosody's own parser has the same
    # deferral (Debian 12's lua-expat), which delays larger ones before
    # they reach us: see NOTES.md.
    reply = alice.iq(subscribe_iq(ALICE_SVC, 'INBOX/' + 'x' * 7000, jid), timeout=3)
    assert iq_type(reply) == 'error'
    # beyond Prosody's c2s stanza limit (256 KiB) the server itself cuts the
    # sender off: we never see the stanza and stay available to the others
    big = stack.client('alice')
    big.send("<iq type='get' to='%s'><pubsub xmlns='%s'><items node='%s'/>"
             "</pubsub></iq>" % (ALICE_SVC, NS_PUBSUB, 'y' * 300000))
    time.sleep(1)
    assert iq_type(alice.iq(items_iq(ALICE_SVC, 'INBOX'))) == 'result'
    assert 'y' * 1000 not in stack.daemon.log()
    # a flood: the same requests many times over; memory settles
    def flood(n):
        for i in range(n):
            alice.iq(subscribe_iq(ALICE_SVC, 'INBOX/Nope%d' % (i % 7), jid))
            alice.iq(items_iq(ALICE_SVC, 'INBOX'))
    flood(300)
    before = rss_kb(stack.daemon.pid)
    flood(600)
    after = rss_kb(stack.daemon.pid)
    print('flood: RSS %d KiB -> %d KiB over 1200 more requests' % (before, after))
    assert stack.daemon.running()
    # AddressSanitizer keeps freed memory in quarantine, so RSS says nothing
    # there; LeakSanitizer checks the same run at exit (stop_daemon)
    if 'libasan' not in open('/proc/%d/maps' % stack.daemon.pid).read():
        assert after - before < 4096


def test_socket_and_store_modes(workdir):
    """With the production defaults (mode 0660, group mail) Cyrus, running
    as cyrus:mail, can send and nobody else can; only we read the store."""
    import grp
    import os
    import stat
    s = Stack(workdir, users=('alice',),
              config={'cyrus': {'socket_mode': '0660', 'socket_group': 'mail'}})
    try:
        s.start()
        st = os.stat(s.notify_socket)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == grp.getgrnam('mail').gr_gid
        assert stat.S_IMODE(os.stat(s.db).st_mode) & 0o077 == 0
        alice = s.client('alice')
        subscribe_all(s, alice)
        s.cyrus.deliver('alice', make_message())
        wait_event(alice, 'MessageNew', 'INBOX')
        # an unprivileged user cannot inject events
        proc = __import__('subprocess').run(
            ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
             '/usr/bin/python3', '-c',
             'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); '
             's.sendto(b"x", sys.argv[1])', s.notify_socket],
            capture_output=True, text=True)
        assert proc.returncode != 0 and 'Permission denied' in proc.stderr
    finally:
        s.stop()


def test_readable_secret_file_is_reported(workdir):
    import os
    path = os.path.join(workdir, 'component.secret')
    with open(path, 'w') as f:
        f.write('s3cret\n')          # the harness Prosody's secret
    os.chmod(path, 0o644)
    s = Stack(workdir, users=('alice',), config={'component': {'secret_file': path}})
    try:
        s.start()
        log = s.daemon.log()
        assert 'secret_file %s is readable by group or others (mode 0644)' % path in log
        assert 's3cret' not in log
    finally:
        s.stop()
