"""Benchmark: fan-out, one event -> M subscribers (M = 50 and 1000; a
small and a ~2 KB item payload), N events as fast as the path allows.

    /usr/bin/python3 bench/fanout.py BUILD_DIR [--quick]

Rows, all through one private Prosody 0.12 (memory storage for pubsub,
log level error, Nagle off: harness.Prosody writes network_settings =
{ nagle = false }; mailpubsubd and libstrophe's component set TCP_NODELAY):

  mailpubsubd via Prosody: N MessageNew datagrams (Cyrus's wire format)
      for alice's INBOX to mailpubsubd's notify socket; M users subscribed
      to INBOX on alice@events.localhost (authorized by Cyrus's ACL:
      'anyone lr' on user/alice).
  Prosody mod_pubsub: a client publishes N items (the very payload
      mailpubsubd produced, so the notifications have the same size) to a
      node of Prosody's own pubsub component with the same M subscribers.
  raw ceiling: a component (bench/fanout_component: mailpubsubd's own
      src/xmpp/component.c, no store or checks) sends M*N ready-made
      notifications (mailpubsubd's <event/>) straight to the subscribers.

The same paths through one private ejabberd 23.01 in the same run
(tests/integration/ejabberd.py: pubsub tables in RAM, log level warning;
ejabberd sets TCP_NODELAY on every listener socket itself, so Nagle is
off with nothing to configure; no shapers on c2s or the component port):

  mailpubsubd via ejabberd: as above, a second Cyrus + mailpubsubd with
      ejabberd as the XMPP server.
  ejabberd mod_pubsub: the same publisher client and payload, node INBOX
      of mod_pubsub on pubsub.localhost (created by the publisher's first
      publish; access_createnode allows local users).
  raw ceiling via ejabberd: bench/fanout_component through ejabberd's
      ejabberd_service listener.
  multicast via ejabberd: the same component sending one XEP-0033
      stanza per event to ejabberd's stock mod_multicast (limits raised
      to infinite): what mailpubsubd could reach by handing ejabberd one
      stanza per event instead of one per subscriber.
  mailpubsubd via ejabberd, [delegate]: mailpubsubd restarted with
      [delegate] service = pubsub.localhost (its component domain may
      create nodes there): each event is published once to a node that
      mirrors the subscribers, and mod_pubsub sends the notifications.

Deliveries/s = M*N / (time from the first send to the last notification
at the clients). The subscribers are bench/fanout_client: up to 500
libstrophe connections per process in one select() loop; its CPU time
(getrusage) from GO to the last delivery is printed beside each row with
the XMPP server's CPU time over the same span (/proc/PID/stat: Prosody's
process, or ejabberd's beam.smp with all its scheduler threads, which can
pass 100% on 2 cores). A summary gives, per server, M and size,
mailpubsubd's deliveries/s over mod_pubsub's and over the raw ceiling's.

Latency p50/p99 per delivery: from the event accepted (the item's
`received` stamp; the peers' payloads carry a stamp taken as they are
sent) to the subscriber's receipt, at saturation (all N events at once).
"""
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))

from ejabberd import Ejabberd  # noqa: E402
from harness import wait_until  # noqa: E402
from stack import COMPONENT, Stack, iq_type, items_iq, service_jid  # noqa: E402

PW = 'pw'
PER_PROC = 500
SVC = service_jid('alice')
PUBSUB = 'pubsub.localhost'
RAW = 'raw.localhost'
MULTICAST = 'multicast.localhost'
EXTRA = '''
Component "%s" "pubsub"
    storage = "memory"
    autocreate_on_publish = true
    admins = { "pub@localhost", "%s" }

Component "%s"
    component_secret = "s3cret"

Component "%s" "fanout_multicast" { multicast_senders = { "%s" } }
plugin_paths = { "%%s" }
''' % (PUBSUB, COMPONENT, RAW, MULTICAST, RAW)

# An XEP-0033 multicast service in 20 lines (not in Prosody 0.12 nor in
# Debian's prosody-modules): one stanza in, one copy routed per bcc address,
# as mod_pubsub's broadcast routes one per subscriber. Measured as the
# "multicast" row: what mailpubsubd could reach with such a module.
MULTICAST_MODULE = '''
local jid_bare = require "util.jid".bare;
local ns = "http://jabber.org/protocol/address";
local senders = module:get_option_set("multicast_senders", {});
module:add_feature(ns);
module:hook("message/host", function (event)
	local stanza = event.stanza;
	local addresses = stanza:get_child("addresses", ns);
	if not addresses then return; end
	if not senders:contains(jid_bare(stanza.attr.from)) then return true; end
	stanza:maptags(function (tag)
		if tag.name == "addresses" and tag.attr.xmlns == ns then return nil; end
		return tag;
	end);
	for address in addresses:childtags("address") do
		if address.attr.jid then
			stanza.attr.to = address.attr.jid;
			module:send(stanza);
		end
	end
	return true;
end);
'''


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def percentile(sorted_values, q):
    if not sorted_values:
        return float('nan')
    return sorted_values[min(len(sorted_values) - 1, len(sorted_values) * q // 100)]


def write_accounts(prosody, users):
    """Prosody 0.12 internal_plain: data/<host>/accounts/<user>.dat holding
    a Lua table, the format prosodyctl register writes (checked at start
    against alice's)."""
    d = os.path.join(prosody.base, 'data', 'localhost', 'accounts')
    for u in users:
        with open(os.path.join(d, u + '.dat'), 'w') as f:
            f.write('return {\n\t["password"] = "%s";\n};\n' % PW)


class Clients:
    """M subscribers in ceil(M / 500) fanout_client processes."""

    def __init__(self, build, port, m):
        self.m = m
        self.procs = []
        exe = os.path.join(build, 'bench', 'fanout_client')
        for first in range(0, m, PER_PROC):
            n = min(PER_PROC, m - first)
            p = subprocess.Popen([exe, 'recv', '127.0.0.1', str(port), 'u',
                                  str(first), str(n), PW],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, bufsize=1)
            p.n = n
            self.procs.append(p)
        for p in self.procs:
            line = p.stdout.readline().split()
            if line[:1] != ['READY'] or int(line[1]) != p.n:
                raise RuntimeError('clients: %r' % line)

    def subscribe(self, service, node):
        for p in self.procs:
            p.stdin.write('SUB %s %s\n' % (service, node))
        for p in self.procs:
            line = p.stdout.readline().split()
            if line[:1] != ['SUBSCRIBED'] or int(line[1]) != p.n:
                raise RuntimeError('subscribe to %s %s: %r' % (service, node, line))

    def go(self, n_events, dump=None):
        for i, p in enumerate(self.procs):
            p.stdin.write('GO %d%s\n' % (p.n * n_events,
                                         ' ' + dump if dump and i == 0 else ''))

    def results(self):
        return [json.loads(p.stdout.readline()) for p in self.procs]

    def close(self):
        for p in self.procs:
            try:
                p.stdin.write('QUIT\n')
                p.stdin.close()
                p.wait(10)
            except Exception:
                p.kill()


def datagram(uid, pad):
    body = {'event': 'MessageNew',
            'uri': 'imap://localhost/user/alice;UIDVALIDITY=1/;UID=%d' % uid,
            'messages': uid, 'uidnext': uid + 1, 'vnd.cmu.unseenMessages': uid}
    if pad:
        body['vnd.bench.pad'] = 'x' * pad
    return (b'pubsub\0EVENT\0\0\0\0' b'0\0' +
            json.dumps(body, separators=(',', ':')).encode() + b'\0')


class Bench:
    def __init__(self, build, work):
        self.build = build
        self.work = work
        # UIDs follow prime()'s UID 1 without a gap: a gap makes mailpubsubd
        # resync (STATUS, then a MailboxStatus item to every subscriber),
        # which the clients would count as deliveries
        self.uid = 2
        self.server_pid = None   # Prosody's process or ejabberd's beam.smp
        self.daemon_pid = None

    def measure(self, clients, n, send, dump=None):
        """Starts the clients counting, calls send() (returns the wall time
        of the first send), and returns a result dict."""
        sampler = None
        if os.environ.get('FANOUT_SAMPLE'):   # debugging: socket queues over time
            import threading
            stop = threading.Event()

            def sample():
                with open(os.environ['FANOUT_SAMPLE'], 'a') as f:
                    while not stop.is_set():
                        out = subprocess.run(['ss', '-tnH', 'state', 'established'],
                                             capture_output=True, text=True).stdout
                        rq = sq = 0
                        big = []
                        for line in out.splitlines():
                            parts = line.split()
                            r, q = int(parts[0]), int(parts[1])
                            rq += r
                            sq += q
                            if r > 20000 or q > 20000:
                                big.append(line)
                        f.write('%.2f server_cpu=%.2f recvq=%d sendq=%d %s\n' % (
                            time.time(), cpu_ticks(self.server_pid), rq, sq,
                            ' | '.join(big[:4])))
                        f.flush()
                        time.sleep(0.25)
            sampler = threading.Thread(target=sample)
            sampler.start()
        try:
            return self._measure(clients, n, send, dump)
        finally:
            if sampler:
                stop.set()
                sampler.join()

    def quiesce(self, timeout=60):
        """Waits until the XMPP server and mailpubsubd are idle (< 5% CPU
        over 0.5 s each): what a row left queued must not be counted by the
        next one, and mailpubsubd may still be busy (fresh subscriptions)
        while the server idles."""
        pids = [p for p in (self.server_pid, self.daemon_pid) if p]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c0 = [cpu_ticks(p) for p in pids]
            time.sleep(0.5)
            if all(cpu_ticks(p) - c < 0.025 for p, c in zip(pids, c0)):
                return True
        return False

    def _measure(self, clients, n, send, dump=None):
        self.quiesce()
        m0 = machine_busy()
        c0 = cpu_ticks(self.server_pid)
        clients.go(n, dump)
        time.sleep(0.2)
        t_send = send()
        res = clients.results()
        c1 = cpu_ticks(self.server_pid)
        m1 = machine_busy()
        total = sum(r['total'] for r in res)
        lat = sorted(x for r in res for x in r.get('lat_ms', []))
        last = max(r['last'] for r in res)
        span = last - t_send
        return dict(total=total, expect=clients.m * n, rate=total / span if span > 0 else 0,
                    span=span,
                    client_cpu=max(r['cpu_s'] / max(r['last'] - r['t_go'], 1e-6)
                                   for r in res),
                    client_cpu_s=sum(r['cpu_s'] for r in res),
                    server_cpu=(c1 - c0) / max(last - t_send + 0.2, 1e-6),
                    machine=(m1[0] - m0[0]) / max(m1[1] - m0[1], 1),
                    per_second=[r['per_second'] for r in res],
                    p50=percentile(lat, 50), p99=percentile(lat, 99))

    def mailpubsubd_row(self, stack, clients, n, pad, dump):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dgrams = [datagram(self.uid + i, pad) for i in range(n)]
        self.uid += n

        def send():
            t0 = time.time()
            for d in dgrams:
                sock.sendto(d, stack.notify_socket)
            return t0
        perf = None
        if os.environ.get('FANOUT_PERF'):   # debugging: a profile per mailpubsubd row
            out = os.path.join(os.environ['FANOUT_PERF'], 'perf-%s-%d-%d.data' % (
                type(stack.xmpp).__name__.lower(), clients.m, pad))
            perf = subprocess.Popen(['perf', 'record', '-g', '-q', '-o', out,
                                     '-p', str(stack.daemon.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        try:
            return self.measure(clients, n, send, dump)
        finally:
            sock.close()
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(30)

    def restart_daemon(self, stack, clients, **config):
        """A fresh mailpubsubd knows no ACL answers yet: two events go
        through before anything is measured, the first asking the store
        for every subscriber, the second (with [delegate]) building the
        server's node; each waits until every subscriber got it."""
        stack.stop_daemon()
        stack.write_config(**config)
        stack.start_daemon()
        self.daemon_pid = stack.daemon.pid
        if config.get('delegate'):
            stack.daemon.wait_log(r'delegate: plain subscriptions are published', 15)
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            clients.go(1)
            time.sleep(0.2)
            s.sendto(datagram(self.uid, 0), stack.notify_socket)
            s.close()
            self.uid += 1
            got = sum(r['total'] for r in clients.results())
            if got < clients.m:
                raise RuntimeError('warm-up after a restart: %d of %d' % (got, clients.m))

    def pubsub_row(self, server, clients, n, payload_file, subscribe):
        exe = os.path.join(self.build, 'bench', 'fanout_client')
        pub = subprocess.Popen([exe, 'publish', '127.0.0.1', str(server.c2s_port),
                                'pub@localhost', PW, PUBSUB, 'INBOX', payload_file,
                                str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, bufsize=1)
        try:
            if pub.stdout.readline().strip() != 'READY':
                raise RuntimeError('publisher did not start')
            if subscribe:
                clients.subscribe(PUBSUB, 'INBOX')

            def send():
                pub.stdin.write('GO\n')
                return json.loads(pub.stdout.readline())['t_send']
            return self.measure(clients, n, send)
        finally:
            try:
                pub.stdin.write('QUIT\n')
                pub.stdin.close()
                pub.wait(10)
            except Exception:
                pub.kill()

    def raw_row(self, server, clients, n, event_file, multicast=False):
        exe = os.path.join(self.build, 'bench', 'fanout_component')
        comp = subprocess.Popen([exe, '127.0.0.1', str(server.component_port), RAW,
                                 's3cret', 'u', '0', str(clients.m), str(n), event_file] +
                                ([MULTICAST] if multicast else []),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, bufsize=1)
        try:
            if comp.stdout.readline().strip() != 'READY':
                raise RuntimeError('component did not connect')

            def send():
                comp.stdin.write('GO\n')
                return json.loads(comp.stdout.readline())['t_send']
            return self.measure(clients, n, send)
        finally:
            try:
                comp.stdin.close()
                comp.wait(10)
            except Exception:
                comp.kill()


def prime(stack):
    """alice's INBOX readable by the subscribers, and its node made (the
    node exists once an event for it was seen)."""
    stack.cyrus.setacl(stack.cyrus.mailbox('alice'), 'anyone', 'lr')
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(datagram(1, 0), stack.notify_socket)
    s.close()
    alice = stack.client('alice')
    wait_until(lambda: iq_type(alice.iq(items_iq(SVC, 'INBOX'))) == 'result', 10)


def prosody_stack(work, config, users):
    stack = Stack(work, users=('alice',), config=config)
    stack.prosody.log_level = 'error'
    plugins = os.path.join(work, 'plugins')
    os.makedirs(plugins)
    with open(os.path.join(plugins, 'mod_fanout_multicast.lua'), 'w') as f:
        f.write(MULTICAST_MODULE)
    stack.prosody.extra_config = EXTRA % plugins

    def accounts():
        with open(os.path.join(stack.prosody.base, 'data', 'localhost', 'accounts',
                               'alice.dat')) as f:
            written = f.read()
        if written != 'return {\n\t["password"] = "%s";\n};\n' % 'secret-pw':
            raise RuntimeError('unexpected account file format: %r' % written)
        write_accounts(stack.prosody, users)
    return stack, accounts


def ejabberd_stack(work, config, users):
    server = Ejabberd(work, component_domain=COMPONENT, extra_components=(RAW,),
                      log_level='warning', pubsub_host=PUBSUB,
                      pubsub_creators=(COMPONENT,))
    stack = Stack(work, users=('alice',), config=config, xmpp_server=server)
    return stack, lambda: server.register_many(users, PW)


# per server: label, stack maker, rows (kind, name; kind 'multicast' only
# where the server has the module)
SERVERS = {
    'prosody': ('Prosody', prosody_stack, [
        ('mailpubsubd', 'mailpubsubd via Prosody'),
        ('pubsub', "Prosody's mod_pubsub"),
        ('raw', 'raw ceiling (component, 1 msg/subscriber)'),
        ('multicast', 'multicast (component, 1 msg/event, XEP-0033)*'),
        ('delegate', 'mailpubsubd via Prosody, [delegate]***')]),
    'ejabberd': ('ejabberd', ejabberd_stack, [
        ('mailpubsubd', 'mailpubsubd via ejabberd'),
        ('pubsub', 'ejabberd mod_pubsub'),
        ('raw', 'raw ceiling via ejabberd'),
        ('multicast', 'multicast via ejabberd (XEP-0033)**'),
        ('delegate', 'mailpubsubd via ejabberd, [delegate]***')]),
}


def run_server(key, build, work, cases, sizes, rows):
    """All rows of one XMPP server, appended to rows as (server key, kind,
    name, M, N, size label, result)."""
    _, make_stack, kinds = SERVERS[key]
    delegated = dict(kinds).get('delegate')
    work = os.path.join(work, key)
    os.makedirs(work)
    os.chmod(work, 0o755)
    max_m = max(m for m, _ in cases)
    # pings: a pong queues behind seconds of notifications in the server;
    # the default 5 s would drop and reconnect mailpubsubd mid-row. ACL
    # answers stay cached for the whole run: the tests' 60 s would make
    # later rows re-check every subscriber over IMAP (and keep them off
    # the [delegate] node meanwhile)
    stack, accounts = make_stack(work, {
        'log': {'level': 'info'},
        'imap': {'acl_cache_ttl': 3600},
        'component': {'ping_interval': 120, 'ping_timeout': 120}},
        ['u%d' % i for i in range(max_m)] + ['pub'])
    bench = Bench(build, work)
    try:
        stack.start()
        bench.server_pid = stack.xmpp.pid if key == 'ejabberd' else stack.prosody.proc.pid
        bench.daemon_pid = stack.daemon.pid
        accounts()
        prime(stack)
        for m, n in cases:
            t0 = time.monotonic()
            clients = Clients(build, stack.xmpp.c2s_port, m)
            clients.subscribe(SVC, 'INBOX')
            login_s = time.monotonic() - t0
            try:
                first_pubsub = True
                for label, pad in sizes:
                    dump = os.path.join(work, 'dump-%d-%d' % (m, pad))
                    for kind, name in kinds:
                        if kind == 'delegate':
                            continue
                        if kind == 'mailpubsubd':
                            r = bench.mailpubsubd_row(stack, clients, n, pad, dump)
                            if not os.path.exists(dump + '.payload'):
                                print('%s M=%d %s: mailpubsubd delivered nothing; see %s' % (
                                    key, m, label, stack.daemon.logfile), flush=True)
                                break
                            r['payload'] = len(open(dump + '.payload').read().encode())
                            r['stanza'] = len(open(dump + '.event').read().encode())
                        elif kind == 'pubsub':
                            r = bench.pubsub_row(stack.xmpp, clients, n, dump + '.payload',
                                                 first_pubsub)
                            first_pubsub = False
                        else:
                            r = bench.raw_row(stack.xmpp, clients, n, dump + '.event',
                                              kind == 'multicast')
                        rows.append((key, kind, name, m, n, label, r))
                        time.sleep(0.5)
                if delegated:
                    # after the direct rows: a restart costs ACL re-checks
                    bench.restart_daemon(stack, clients, delegate={'service': PUBSUB})
                    try:
                        for label, pad in sizes:
                            r = bench.mailpubsubd_row(stack, clients, n, pad, None)
                            rows.append((key, 'delegate', delegated, m, n, label, r))
                            time.sleep(0.5)
                    finally:
                        bench.restart_daemon(stack, clients)
            finally:
                clients.close()
            print('(%s, M=%d: %d logins + subscriptions in %.1f s)' % (
                SERVERS[key][0], m, m, login_s), flush=True)
    finally:
        stack.stop()


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build')
    quick = '--quick' in sys.argv
    verbose = '-v' in sys.argv
    only = sys.argv[sys.argv.index('--only') + 1] if '--only' in sys.argv else None
    # debugging one server: --server ejabberd
    servers = ([sys.argv[sys.argv.index('--server') + 1]] if '--server' in sys.argv
               else ['prosody', 'ejabberd'])
    os.environ.setdefault('MAILPUBSUBD', os.path.join(build, 'mailpubsubd'))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    cases = [(50, 200), (1000, 20)] if not quick else [(50, 50)]
    sizes = [('small', 0), ('2 KB', 1800)]
    if only:   # e.g. --only 1000x20:1800 (debugging one case)
        mn, pad = only.split(':')
        cases = [tuple(int(x) for x in mn.split('x'))]
        sizes = [(pad, int(pad))]
    work = tempfile.mkdtemp(prefix='mailpubsub-bench-')
    os.chmod(work, 0o755)
    rows = []
    for key in servers:
        run_server(key, build, work, cases, sizes, rows)
    print('\n%-46s %5s %4s %-6s %8s %11s %12s %7s %8s %8s %7s %7s %8s' % (
        'fan-out (1 event -> M subscribers)', 'M', 'N', 'size', 'payload',
        'got', 'deliveries/s', 'ratio', 'p50 ms', 'p99 ms', 'client', 'server', 'machine'))
    rate = {(key, kind, m, label): r['rate'] for key, kind, _, m, n, label, r in rows}
    payloads = {(key, m, label): r['payload'] for key, kind, _, m, n, label, r in rows
                if 'payload' in r}
    for key, kind, name, m, n, label, r in rows:
        base = rate.get((key, 'pubsub', m, label))
        print('%-46s %5d %4d %-6s %7dB %11s %12.0f %6.2fx %8.1f %8.1f %6.0f%% %7.0f%% %7.0f%%' % (
            name, m, n, label, payloads.get((key, m, label), 0),
            '%d/%d' % (r['total'], r['expect']) if r['total'] != r['expect'] else 'all',
            r['rate'], r['rate'] / base if base else 0, r['p50'], r['p99'],
            100 * r['client_cpu'], 100 * r['server_cpu'], 100 * r['machine']))
        if verbose:
            print('    span %.2f s, per second per client process: %s' % (
                r['span'], r['per_second']))
    print('(payload: the item payload; every notification carries it in the same '
          '<event/>. ratio: to the same server\'s mod_pubsub. p50/p99: per delivery, '
          'from the event accepted (mailpubsubd: the item\'s received stamp, taken '
          'when the datagram is read; the other senders stamp it as they send each '
          'event) to the client\'s receipt, ms precision; the N events go as fast '
          'as each path takes them, so this is latency at saturation. client: the busiest '
          'fanout_client process\'s CPU time (getrusage) / its wall time from GO to '
          'its last delivery; server: the XMPP server\'s CPU time (/proc/PID/stat; '
          'ejabberd: beam.smp, all threads) / the row\'s span; 100% = one core; '
          'machine: both cores\' busy share over the row (/proc/stat), 100% = '
          'saturated. *multicast: a 20-line Prosody module, not stock Prosody; '
          '**multicast via ejabberd: stock mod_multicast, not what mailpubsubd does; '
          '***[delegate]: mailpubsubd publishing each event once to a node of '
          'the server\'s own mod_pubsub that mirrors the ACL-authorized '
          'subscribers, stock servers)')
    print('\n%-10s %-12s %5s %-6s %14s %14s' % ('server', 'mailpubsubd', 'M', 'size',
                                               '/ mod_pubsub', '/ raw ceiling'))
    for key in servers:
        for ours_kind, ours_name in (('mailpubsubd', 'direct'), ('delegate', '[delegate]')):
            for m, _ in cases:
                for label, _ in sizes:
                    ours = rate.get((key, ours_kind, m, label))
                    if ours is None:
                        continue
                    ratios = []
                    for kind in ('pubsub', 'raw'):
                        other = rate.get((key, kind, m, label))
                        ratios.append('%.2fx' % (ours / other) if other else '-')
                    print('%-10s %-12s %5d %-6s %14s %14s' % (
                        SERVERS[key][0], ours_name, m, label, *ratios))
    print('(goals: via ejabberd >= 2.00x its mod_pubsub and >= 0.90x the raw ceiling; '
          'via Prosody >= 1.00x its mod_pubsub)')
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
