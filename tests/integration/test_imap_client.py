"""src/imap/imap_client.c against a private Cyrus, through tests/imap_probe.

Build the probe first (path in $IMAP_PROBE, default /tmp/imap_probe):
    gcc -std=c11 -D_GNU_SOURCE -Isrc -o /tmp/imap_probe tests/imap_probe.c \
        src/imap/imap_client.c src/imap/imap_name.c src/base/log.c \
        $(pkg-config --cflags --libs libetpan libuv openssl libsasl2)
then, as root:  cd tests/integration && /usr/bin/python3 -m pytest -q test_imap_client.py

Rights are checked twice: against what we expect from the ACLs and against
what Cyrus itself answers to the user logged in directly, so a wrong
mailbox-name translation cannot pass by accident.
"""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

PROBE = os.environ.get('IMAP_PROBE', '/tmp/imap_probe')
OWNER_RIGHTS = 'lrswipkxtecdan'   # Cyrus's default ACL for a mailbox owner

# built by make check-integration: missing is a failure, never a skip
assert os.access(PROBE, os.X_OK), 'imap_probe not built at %s' % PROBE


class Probe:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.lines = proc.stdout.splitlines()
        self.stderr = proc.stderr
        self.elapsed = elapsed

    @property
    def line(self):
        assert len(self.lines) == 1, self.lines
        return self.lines[0]

    def __repr__(self):
        return 'Probe(rc=%r, lines=%r, stderr=%r)' % (self.rc, self.lines,
                                                       self.stderr[-2000:])


def probe(port, *cmd, opts=(), host='127.0.0.1', timeout_ms=3000):
    argv = [PROBE, '--timeout', str(timeout_ms)] + list(opts) + \
        [host, str(port), 'admin', 'pw'] + list(cmd)
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return Probe(proc, time.monotonic() - t0)


def myrights(port, identity, account, node, **kw):
    return probe(port, 'myrights', identity, account, node, **kw)


def cyrus_myrights(cyrus, user, name):
    """MYRIGHTS as `user` logged in directly; name in user's namespace."""
    m = cyrus.imap(user)
    try:
        typ, data = m.myrights(harness.imap_quote(name))
        if typ != 'OK':
            return None
        return data[0].decode().rsplit(' ', 1)[1]
    finally:
        m.logout()


def restart_same_ports(cyrus):
    """Cyrus.start() picks new ports; clients must find it where it was."""
    ports = [cyrus.imap_port, cyrus.lmtp_port]
    orig = harness.free_port
    harness.free_port = lambda: ports.pop(0)
    try:
        cyrus.start()
    finally:
        harness.free_port = orig


@pytest.fixture
def mail(cyrus):
    """alice with folders and ACLs for bob; alicia and carol exist too."""
    c = cyrus
    for u in ('alice', 'alicia', 'bob', 'carol'):
        c.create_user(u)
    mb = lambda *p: c.mailbox('alice', *p)   # noqa: E731
    c.create_mailbox(mb('Projects'))
    c.create_mailbox(mb('Projects', '2024'))
    c.create_mailbox(mb('OnlyL'))
    c.create_mailbox(mb('OnlyR'))
    c.create_mailbox(mb('Public'))
    c.create_mailbox(mb('Parent'))
    c.create_mailbox(mb('Parent', 'Child'))    # before the grant on Parent
    c.create_mailbox(mb('Entwürfe'))
    c.create_mailbox(mb('R&D'))
    c.create_mailbox(c.mailbox('alicia', 'Other'))
    c.create_mailbox('Shared')
    c.create_mailbox('Shared/Team')
    c.setacl(mb('Projects'), 'bob', 'lr')
    c.setacl(mb('OnlyL'), 'bob', 'l')
    c.setacl(mb('OnlyR'), 'bob', 'r')
    c.setacl(mb('Public'), 'anyone', 'lr')
    c.setacl(mb('Public'), '-bob', 'r')
    c.setacl(mb('Parent'), 'bob', 'lr')
    c.setacl(mb('Entwürfe'), 'bob', 'lr')
    c.setacl(mb('R&D'), 'bob', 'lrs')
    c.setacl('Shared/Team', 'anyone', '""')   # drop Cyrus's defaultacl
    c.setacl('Shared/Team', 'bob', 'lr')
    return c


CASES = [
    # identity, node under alice, expected rights (None = NO), bob's own name
    ('alice', 'INBOX', OWNER_RIGHTS, 'INBOX'),
    ('alice', 'INBOX/Projects', OWNER_RIGHTS, 'INBOX/Projects'),
    ('bob', 'INBOX/Projects', 'lr', 'user/alice/Projects'),
    ('bob', 'INBOX/OnlyL', 'l', 'user/alice/OnlyL'),
    ('bob', 'INBOX/OnlyR', 'r', 'user/alice/OnlyR'),
    ('bob', 'INBOX/Public', 'l', 'user/alice/Public'),       # anyone lr, -bob r
    ('carol', 'INBOX/Public', 'lr', 'user/alice/Public'),    # anyone lr
    ('bob', 'INBOX/Parent', 'lr', 'user/alice/Parent'),
    ('bob', 'INBOX/Parent/Child', None, 'user/alice/Parent/Child'),
    ('bob', 'INBOX/Entwürfe', 'lr', 'user/alice/Entwürfe'),
    ('bob', 'INBOX/R&D', 'lrs', 'user/alice/R&D'),
    ('bob', 'INBOX', None, 'user/alice'),
    ('carol', 'INBOX/Projects', None, 'user/alice/Projects'),
    ('bob', 'INBOX/Nonexistent', None, 'user/alice/Nonexistent'),
    ('alice', 'INBOX/Nonexistent', None, 'INBOX/Nonexistent'),
]


def test_myrights_follow_acls(mail):
    port = mail.imap_port
    for identity, node, want, name in CASES:
        p = myrights(port, identity, 'alice', node)
        if want is None:
            assert (p.rc, p.line) == (1, 'NO'), (identity, node, p)
        else:
            assert p.rc == 0, (identity, node, p)
            assert set(p.line.split(' ', 1)[1]) == set(want), (identity, node, p)
        # Cyrus's own answer to that user for the same mailbox
        direct = cyrus_myrights(mail, identity, name)
        got = p.line.split(' ', 1)[1] if p.rc == 0 else None
        assert got == direct, (identity, node, got, direct)


def test_myrights_in_one_session_pool(mail):
    """All cases in one process, in parallel through a pool of 2 sessions
    (LRU closes beyond that): same answers as one by one."""
    cmd = []
    for identity, node, _, _ in CASES:
        cmd += ['myrights', identity, 'alice', node]
    p = probe(mail.imap_port, *cmd, opts=['--parallel', '--max-sessions', '2', '-v'])
    assert len(p.lines) == len(CASES), p
    for (identity, node, want, _), line in zip(CASES, p.lines):
        if want is None:
            assert line == 'NO', (identity, node, line)
        else:
            assert set(line.split(' ', 1)[1]) == set(want), (identity, node, line)
    assert 'pool full' in p.stderr
    assert 'pw' not in re.findall(r'\S+', p.stderr)     # no password in the log
    # one connection per identity switch at most, never one per call
    assert p.stderr.count('AUTHENTICATE') < len(CASES)


def test_unknown_identity_and_shared(mail):
    port = mail.imap_port
    p = myrights(port, 'nosuchuser', 'alice', 'INBOX/Public')
    assert p.line == 'OK lr'       # anyone applies to any authenticated user
    p = myrights(port, 'nosuchuser', 'alice', 'INBOX/Projects')
    assert (p.rc, p.line) == (1, 'NO')
    p = myrights(port, 'bob', '', 'Shared/Team')
    assert p.rc == 0 and set(p.line.split()[1]) == set('lr'), p
    assert cyrus_myrights(mail, 'bob', 'Shared/Team') == 'lr'
    p = myrights(port, 'carol', '', 'Shared/Team')
    assert (p.rc, p.line) == (1, 'NO'), p
    assert cyrus_myrights(mail, 'carol', 'Shared/Team') is None
    # nodes that cannot name a mailbox
    for node in ('Projects', 'INBOX//x', 'INBOX/%zz'):
        p = myrights(port, 'bob', 'alice', node)
        assert (p.rc, p.line) == (1, 'NO'), (node, p)


def test_list(mail):
    p = probe(mail.imap_port, 'list', 'alice')
    assert p.rc == 0, p
    assert p.line.split('\t') == ['OK', 'INBOX', 'INBOX/Entwürfe', 'INBOX/OnlyL',
                                  'INBOX/OnlyR', 'INBOX/Parent',
                                  'INBOX/Parent/Child', 'INBOX/Projects',
                                  'INBOX/Projects/2024', 'INBOX/Public',
                                  'INBOX/R&D']
    p = probe(mail.imap_port, 'list', 'alicia', 'list', '', 'list', 'nobody')
    assert p.lines == ['OK\tINBOX\tINBOX/Other', 'OK\tShared\tShared/Team', 'OK'], p


def test_status_counts(mail):
    c = mail
    c.setacl(c.mailbox('alice', 'Projects'), 'anyone', 'p')   # LMTP user+Projects
    for i in range(3):
        c.deliver('alice', harness.make_message(subject='in %d' % i))
    c.deliver('alice', harness.make_message(subject='p'), mailbox='Projects')
    m = c.imap('alice')
    try:
        m.select('INBOX')
        m.store('1', '+FLAGS', '\\Seen')
        m.close()
        want = {}
        for node, name in (('INBOX', 'INBOX'), ('INBOX/Projects', 'INBOX/Projects')):
            typ, data = m.status(name, '(MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ)')
            assert typ == 'OK'
            items = re.search(rb'\((.*)\)', data[0]).group(1).split()
            want[node] = {k.decode().lower(): int(v) for k, v in zip(items[::2], items[1::2])}
    finally:
        m.logout()
    assert want['INBOX']['messages'] == 3 and want['INBOX']['unseen'] == 2
    assert want['INBOX/Projects']['messages'] == 1
    p = probe(c.imap_port, 'status', 'alice', 'INBOX', 'status', 'alice', 'INBOX/Projects',
              'status', 'alice', 'INBOX/Nonexistent')
    assert p.rc == 1, p
    for node, line in zip(('INBOX', 'INBOX/Projects'), p.lines):
        assert line.startswith('OK '), p
        got = dict(kv.split('=') for kv in line.split()[1:])
        assert {k: int(v) for k, v in got.items()} == want[node], (node, line)
    assert p.lines[2] == 'NO'
    # the counters move with deliveries
    c.deliver('alice', harness.make_message(subject='late'))
    p = probe(c.imap_port, 'status', 'alice', 'INBOX')
    got = dict(kv.split('=') for kv in p.line.split()[1:])
    assert int(got['messages']) == 4 and int(got['unseen']) == 3
    assert int(got['uidnext']) == want['INBOX']['uidnext'] + 1
    assert int(got['highestmodseq']) > want['INBOX']['highestmodseq']


def test_tempfail_when_down_and_back(mail):
    c = mail
    port = c.imap_port
    assert myrights(port, 'bob', 'alice', 'INBOX/Projects').line == 'OK lr'
    c.stop()
    p = myrights(port, 'bob', 'alice', 'INBOX/Projects', timeout_ms=2000)
    assert p.rc == 2 and p.line.startswith('TEMPFAIL'), p
    assert p.elapsed < 1.5, p
    # a second call right away does not even try: backoff
    p = probe(port, 'myrights', 'bob', 'alice', 'INBOX/Projects',
              'myrights', 'bob', 'alice', 'INBOX/Projects')
    assert p.rc == 2 and 'backing off' in p.lines[1], p
    restart_same_ports(c)
    assert myrights(port, 'bob', 'alice', 'INBOX/Projects').line == 'OK lr'


def test_pooled_session_survives_server_restart(mail):
    """A pooled session dies with the server; the next call reconnects."""
    c = mail
    port = c.imap_port
    proc = subprocess.Popen(
        [PROBE, '-v', '127.0.0.1', str(port), 'admin', 'pw',
         'myrights', 'bob', 'alice', 'INBOX/Projects', 'sleep', '9000',
         'myrights', 'bob', 'alice', 'INBOX/Projects'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        c.stop()
        restart_same_ports(c)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err[-3000:])
    assert out.splitlines() == ['OK lr', 'OK lr']
    assert 'reconnecting' in err


def test_timeout_on_silent_server(workdir):
    """A server that accepts but never greets: TEMPFAIL after the timeout."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen(16)
        port = s.getsockname()[1]
        p = myrights(port, 'bob', 'alice', 'INBOX', timeout_ms=500)
    assert p.rc == 2, p
    assert 'timed out' in p.stderr, p
    assert 0.4 < p.elapsed < 2.0, p


# ---- TLS ---------------------------------------------------------------------

class TlsCyrus(harness.Cyrus):
    """The harness's Cyrus plus an imaps service; STARTTLS on imap."""

    def __init__(self, workdir, notify_socket, cert, key):
        super().__init__(workdir, notify_socket, extra_config={
            'tls_server_cert': cert, 'tls_server_key': key})
        self.imaps_port = None

    def _write_configs(self):
        if self.imaps_port is None:
            self.imaps_port = harness.free_port()
        super()._write_configs()
        with open(self.cyrus_conf) as f:
            conf = f.read()
        line = ('  imaps    cmd="%s/imapd -s -C %s" listen="127.0.0.1:%d" '
                'prefork=0 maxchild=20\n' % (harness.CYRUS_BIN, self.imapd_conf,
                                             self.imaps_port))
        conf = conf.replace('SERVICES {\n', 'SERVICES {\n' + line)
        with open(self.cyrus_conf, 'w') as f:
            f.write(conf)


@pytest.fixture
def tls_cyrus(workdir, notify_path):
    cert = os.path.join(workdir, 'cert.pem')
    key = os.path.join(workdir, 'key.pem')
    # for 127.0.0.1 only: connecting as "localhost" must fail the name check
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                    '-keyout', key, '-out', cert, '-days', '2',
                    '-subj', '/CN=mailpubsub-test',
                    '-addext', 'subjectAltName=IP:127.0.0.1'],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)   # user cyrus reads it; a throw-away test key
    c = TlsCyrus(workdir, notify_path, cert, key)
    try:
        c.start()
        c.create_user('alice')
        c.create_user('bob')
        c.create_mailbox(c.mailbox('alice', 'Projects'))
        c.setacl(c.mailbox('alice', 'Projects'), 'bob', 'lr')
        c.cert = cert
        yield c
    finally:
        c.stop()


def test_tls_verified(tls_cyrus):
    c = tls_cyrus
    for mode, port in (('imaps', c.imaps_port), ('starttls', c.imap_port)):
        p = myrights(port, 'bob', 'alice', 'INBOX/Projects',
                     opts=['--tls', mode, '--ca', c.cert, '-v'])
        assert p.line == 'OK lr', (mode, p)
        assert 'TLSv1.3' in p.stderr or 'TLSv1.2' in p.stderr, (mode, p)
    # plain text still works against this server: the mode is ours to pick
    assert myrights(c.imap_port, 'bob', 'alice', 'INBOX/Projects').line == 'OK lr'


def test_tls_verification_failures(tls_cyrus):
    c = tls_cyrus
    for mode, port in (('imaps', c.imaps_port), ('starttls', c.imap_port)):
        # no --ca: the system trust store does not know our self-signed cert
        p = myrights(port, 'bob', 'alice', 'INBOX/Projects', opts=['--tls', mode])
        assert p.rc == 2 and p.line.startswith('TEMPFAIL'), (mode, p)
        assert 'certificate verification failed' in p.stderr, (mode, p)
        assert 'self-signed certificate' in p.stderr, (mode, p)
        # the right CA but the wrong name
        p = myrights(port, 'bob', 'alice', 'INBOX/Projects', host='localhost',
                     opts=['--tls', mode, '--ca', c.cert])
        assert p.rc == 2, (mode, p)
        assert 'certificate verification failed' in p.stderr, (mode, p)
        assert 'mismatch' in p.stderr, (mode, p)
        # verification off: works (and says so)
        p = myrights(port, 'bob', 'alice', 'INBOX/Projects',
                     opts=['--tls', mode, '--no-verify'])
        assert p.line == 'OK lr', (mode, p)
        assert 'verification is disabled' in p.stderr


def test_imaps_probe_against_plain_port(tls_cyrus):
    """TLS to a plain-text port fails fast and clearly, without a hang."""
    p = myrights(tls_cyrus.imap_port, 'bob', 'alice', 'INBOX',
                 opts=['--tls', 'imaps', '--ca', tls_cyrus.cert], timeout_ms=2000)
    assert p.rc == 2, p
    assert 'TLS' in p.stderr, p
    assert p.elapsed < 3.0, p


# ---- SASL mechanisms ---------------------------------------------------------

@pytest.fixture
def scram_cyrus(workdir, notify_path):
    """Cyrus checking passwords in an sasldb, so that SCRAM can work."""
    import grp
    import pwd
    db = os.path.join(workdir, 'sasldb2')
    # Cyrus looks users up in the realm of its servername ("localhost")
    subprocess.run(['saslpasswd2', '-p', '-c', '-f', db, '-u', 'localhost', 'admin'],
                   input=b'pw', check=True)
    os.chown(db, pwd.getpwnam(harness.CYRUS_USER).pw_uid,
             grp.getgrnam(harness.CYRUS_GROUP).gr_gid)
    c = harness.Cyrus(workdir, notify_path, extra_config={
        'sasl_pwcheck_method': 'auxprop', 'sasl_auxprop_plugin': 'sasldb',
        'sasl_sasldb_path': db, 'sasl_mech_list': 'PLAIN SCRAM-SHA-256'})
    try:
        c.start()
        c.create_user('alice')
        c.create_user('bob')
        c.create_mailbox(c.mailbox('alice', 'Projects'))
        c.setacl(c.mailbox('alice', 'Projects'), 'bob', 'lr')
        yield c
    finally:
        c.stop()


def test_scram_with_proxy_authorization(scram_cyrus):
    port = scram_cyrus.imap_port
    p = probe(port, 'myrights', 'bob', 'alice', 'INBOX/Projects', 'list', 'alice',
              opts=['--mech', 'SCRAM-SHA-256', '-v'])
    assert p.lines == ['OK lr', 'OK\tINBOX\tINBOX/Projects'], p
    assert 'AUTHENTICATE SCRAM-SHA-256: OK' in p.stderr, p
    # a refused authorization backs off for that identity: the second call
    # fails fast instead of waiting for Cyrus's failure delay again
    argv = [PROBE, '-v', '--mech', 'SCRAM-SHA-256', '127.0.0.1', str(port), 'admin',
            'Wr0ng-Secret',
            'myrights', 'bob', 'alice', 'INBOX/Projects',
            'myrights', 'bob', 'alice', 'INBOX/Projects']
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 2, proc
    assert 'authentication failure' in lines[0], proc
    assert 'backing off' in lines[1], proc
    assert 'Wr0ng-Secret' not in proc.stderr + proc.stdout   # never logged


def test_close_cuts_commands_short(workdir):
    """imap_client_close() with a command blocked on a silent server: the
    callback gets TEMPFAIL at once, not after the 10 s timeout."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen(16)
        port = s.getsockname()[1]
        p = probe(port, 'myrights', 'bob', 'alice', 'INBOX', 'list', 'alice',
                  opts=['--parallel', '--close-after', '300'], timeout_ms=10000)
    assert p.rc == 2, p
    assert all(l.startswith('TEMPFAIL') for l in p.lines) and len(p.lines) == 2, p
    assert p.elapsed < 2.0, p
