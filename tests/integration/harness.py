"""Integration-test harness for mailpubsub.

Runs private, throw-away instances of Cyrus IMAP 3.6 and Prosody 0.12 from a
work directory, a synchronous XMPP client built on slixmpp, and a generic
wrapper for the daemon under test.  Standard library + slixmpp only.

Must run as root (Cyrus' master drops to user ``cyrus``) with Debian's
``/usr/bin/python3`` (slixmpp comes from python3-slixmpp).

Never touches system instances: everything is started from, configured in and
stopped by PIDs recorded under the given work directory.
"""

import asyncio
import base64
import calendar
import copy
import grp
import imaplib
import os
import pwd
import queue
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

CYRUS_BIN = '/usr/lib/cyrus/bin'
CYRUS_USER = 'cyrus'
CYRUS_GROUP = 'mail'

NS_CLIENT = 'jabber:client'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event'
NS_PUBSUB_OWNER = 'http://jabber.org/protocol/pubsub#owner'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'


# --------------------------------------------------------------------------
# small helpers

def free_port():
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05, what='condition'):
    """Poll predicate() until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError('timed out after %.1fs waiting for %s'
                               % (timeout, what))
        time.sleep(interval)


def port_open(port, host='127.0.0.1'):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field after the ")" closing the command name
    return stat[stat.rindex(')') + 2] not in 'ZX'


def pids_with_cmdline(substring):
    """PIDs of live processes whose command line contains substring."""
    found = []
    needle = substring.encode()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                cmd = f.read()
        except OSError:
            continue
        if needle in cmd and pid_alive(pid):
            found.append(pid)
    return found


def kill_and_wait(pids, timeout=10.0):
    """SIGTERM the pids, wait, SIGKILL what is left."""
    pids = [p for p in pids if pid_alive(p)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p)]
            if not pids:
                return
            time.sleep(0.05)
    pids = [p for p in pids if pid_alive(p)]
    if pids:
        raise RuntimeError('processes %r survived SIGKILL' % pids)


def imap_utf7_encode(name):
    """str -> IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out, buf = [], []

    def flush():
        if buf:
            b64 = base64.b64encode(''.join(buf).encode('utf-16-be')).decode()
            out.append('&' + b64.rstrip('=').replace('/', ',') + '-')
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append('&-' if ch == '&' else ch)
        else:
            buf.append(ch)
    flush()
    return ''.join(out)


def imap_utf7_decode(name):
    """IMAP modified UTF-7 -> str."""
    def repl(m):
        if m.group(1) == '':
            return '&'
        b64 = m.group(1).replace(',', '/')
        b64 += '=' * (-len(b64) % 4)
        return base64.b64decode(b64).decode('utf-16-be')
    return re.sub(r'&([^-]*)-', repl, name)


def imap_quote(name):
    """Quote a mailbox name (str, any Unicode) for an imaplib argument."""
    name = imap_utf7_encode(name)
    return '"' + name.replace('\\', '\\\\').replace('"', '\\"') + '"'


_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun',
           'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


def imap_date_instant(text):
    """An RFC 3501 date-time ('02-Dec-2026 10:00:00 +0100', or ' 2-Dec-...'
    with a space-padded day, as Cyrus writes it) -> seconds since the epoch.

    Both day forms are valid, so tests compare instants, never the strings;
    month names are parsed here, not with strptime's %b (locale-dependent).
    """
    m = re.fullmatch(r'\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) '
                     r'([+-])(\d\d)(\d\d)', text)
    if m is None:
        raise ValueError('not an IMAP date-time: %r' % text)
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    month = [x.lower() for x in _MONTHS].index(mon.lower()) + 1
    utc = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss)))
    offset = (int(zh) * 60 + int(zm)) * 60
    return utc - offset if sign == '+' else utc + offset


def _chown_tree(path, user, group):
    uid = pwd.getpwnam(user).pw_uid
    gid = grp.getgrnam(group).gr_gid
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid)


# --------------------------------------------------------------------------
# Cyrus IMAP

class Cyrus:
    """A private Cyrus IMAP 3.6 instance living in workdir.

    Mailbox names used by the helpers are in the admin (internal external)
    namespace, e.g. ``user/alice/Sub`` with unixhierarchysep, ``user.alice.Sub``
    without; ``self.sep`` is the configured separator.
    """

    EXTRA_PARAMS = ('timestamp service clientAddress flagNames messageSize '
                    'messages modseq uidnext vnd.cmu.midset '
                    'vnd.cmu.unseenMessages vnd.cmu.envelope '
                    'vnd.cmu.sessionId vnd.cmu.mailboxACL vnd.cmu.mbtype')

    def __init__(self, workdir, notify_socket, unixhierarchysep=True,
                 altnamespace=False, event_groups=None, extra_config=None,
                 admin='admin', password='pw'):
        self.workdir = os.path.abspath(workdir)
        self.base = os.path.join(self.workdir, 'cyrus')
        self.notify_socket = notify_socket
        self.unixhierarchysep = unixhierarchysep
        self.altnamespace = altnamespace
        self.sep = '/' if unixhierarchysep else '.'
        self.event_groups = event_groups or \
            'message flags access mailbox subscription'
        self.extra_config = dict(extra_config or {})
        self.admin = admin
        self.password = password
        self.imapd_conf = os.path.join(self.base, 'imapd.conf')
        self.cyrus_conf = os.path.join(self.base, 'cyrus.conf')
        self.pidfile = os.path.join(self.base, 'master.pid')
        self.errfile = os.path.join(self.base, 'master.err')
        self.lmtp_socket = os.path.join(self.base, 'socket', 'lmtp')
        self._imap_port = None
        self._lmtp_port = None
        self.pid = None
        self._started = False

    @property
    def imap_port(self):
        return self._imap_port

    @property
    def lmtp_port(self):
        return self._lmtp_port

    def mailbox(self, user, *parts):
        """Admin-namespace name: mailbox('alice', 'Sub') -> user/alice/Sub."""
        return self.sep.join(('user', user) + parts)

    def _write_configs(self):
        for d in ('config', 'config/socket', 'spool', 'socket', 'proc', 'lock',
                  'sieve'):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        yn = lambda b: 'yes' if b else 'no'
        conf = {
            'configdirectory': os.path.join(self.base, 'config'),
            'defaultpartition': 'default',
            'partition-default': os.path.join(self.base, 'spool'),
            'proc_path': os.path.join(self.base, 'proc'),
            'mboxname_lockpath': os.path.join(self.base, 'lock'),
            'sievedir': os.path.join(self.base, 'sieve'),
            'lmtpsocket': self.lmtp_socket,
            'idlesocket': os.path.join(self.base, 'socket', 'idle'),
            'syslog_prefix': 'cyrus-test',
            'servername': 'localhost',
            'admins': self.admin,
            'proxyservers': 'proxy',
            'allowplaintext': 'yes',
            'sasl_pwcheck_method': 'alwaystrue',
            'sasl_mech_list': 'PLAIN LOGIN',
            'unixhierarchysep': yn(self.unixhierarchysep),
            'altnamespace': yn(self.altnamespace),
            'virtdomains': 'off',
            'hashimapspool': 'true',
            'umask': '077',
            'notifysocket': self.notify_socket,
            'event_notifier': 'pubsub',
            'event_groups': self.event_groups,
            'event_extra_params': self.EXTRA_PARAMS,
        }
        conf.update(self.extra_config)
        with open(self.imapd_conf, 'w') as f:
            f.write('# generated by tests/integration/harness.py\n')
            for k, v in conf.items():
                if v is not None:
                    f.write('%s: %s\n' % (k, v))
        c = '-C ' + self.imapd_conf
        b = CYRUS_BIN
        with open(self.cyrus_conf, 'w') as f:
            f.write('''# generated by tests/integration/harness.py
START {
  recover cmd="%(b)s/ctl_cyrusdb %(c)s -r"
}
SERVICES {
  imap     cmd="%(b)s/imapd %(c)s -U 30" listen="127.0.0.1:%(imap)d" prefork=0 maxchild=100
  lmtp     cmd="%(b)s/lmtpd %(c)s -a" listen="127.0.0.1:%(lmtp)d" prefork=0 maxchild=20
  lmtpunix cmd="%(b)s/lmtpd %(c)s" listen="%(sock)s" prefork=0 maxchild=20
}
EVENTS {
  checkpoint cmd="%(b)s/ctl_cyrusdb %(c)s -c" period=30
}
''' % dict(b=b, c=c, imap=self._imap_port, lmtp=self._lmtp_port,
           sock=self.lmtp_socket))
        _chown_tree(self.base, CYRUS_USER, CYRUS_GROUP)

    def choose_ports(self):
        """Picks the IMAP and LMTP ports now (kept by start() and by a
        restart), for configs written before the server starts."""
        if self._imap_port is None:
            self._imap_port = free_port()
            self._lmtp_port = free_port()
            while self._lmtp_port == self._imap_port:
                self._lmtp_port = free_port()
        return self._imap_port, self._lmtp_port

    def start(self, timeout=20.0):
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.choose_ports()
        self._write_configs()
        self._started = True
        subprocess.run([os.path.join(CYRUS_BIN, 'master'),
                        '-C', self.imapd_conf, '-M', self.cyrus_conf,
                        '-p', self.pidfile, '-d', '-L', self.errfile],
                       check=True, stdin=subprocess.DEVNULL, timeout=timeout)

        def read_pid():
            try:
                with open(self.pidfile) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        try:
            self.pid = wait_until(read_pid, timeout, what='cyrus master.pid')
            wait_until(self._greeting_ok, timeout, interval=0.1,
                       what='cyrus IMAP greeting on port %d' % self._imap_port)
            wait_until(lambda: port_open(self._lmtp_port), timeout,
                       what='cyrus LMTP port')
        except Exception:
            self.stop()
            raise
        return self

    def _greeting_ok(self):
        if self.pid and not pid_alive(self.pid):
            raise RuntimeError('cyrus master died; see %s' % self.errfile)
        try:
            with socket.create_connection(('127.0.0.1', self._imap_port),
                                          timeout=2) as s:
                s.settimeout(2)
                return s.recv(512).startswith(b'* OK')
        except OSError:
            return False

    def _ours(self, pid):
        """True if pid is a live process run with our imapd.conf."""
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                return self.imapd_conf.encode() in f.read() and pid_alive(pid)
        except OSError:
            return False

    def leftover_pids(self):
        """Live Cyrus binaries (master, imapd, lmtpd, ...) run with our
        imapd.conf; never matches another instance."""
        out = []
        for pid in pids_with_cmdline(self.imapd_conf):
            try:
                with open('/proc/%d/cmdline' % pid, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            if argv[0].startswith(CYRUS_BIN.encode() + b'/') and \
                    self.imapd_conf.encode() in argv:
                out.append(pid)
        return out

    def stop(self, timeout=2.0):
        """Stop master (by recorded PID) and any leftover process started
        with our imapd.conf.  Idempotent; a no-op if never started.

        master exits at once on SIGTERM (after terminating its children),
        except that a SIGTERM right after a client session ended makes it
        spin at 100% CPU forever in about 1 stop of 3: so wait 0.2 s first
        (no spin seen then), and SIGKILL it after `timeout` seconds."""
        if not self._started:
            return
        if self.pid is None:      # start() failed before reading the pidfile
            try:
                with open(self.pidfile) as f:
                    self.pid = int(f.read().strip())
            except (OSError, ValueError):
                pass
        try:
            if self.pid and self._ours(self.pid):
                time.sleep(0.2)
                kill_and_wait([self.pid], timeout)
        finally:
            # children (imapd, lmtpd, ctl_cyrusdb) started with *our* config
            kill_and_wait(self.leftover_pids(), 5.0)
            self.pid = None
            self._started = False

    # ---- clients ---------------------------------------------------------

    def imap(self, user, password=None):
        """A logged-in imaplib.IMAP4 for user (any password works)."""
        m = imaplib.IMAP4('127.0.0.1', self._imap_port, timeout=30)
        m.login(user, password or self.password)
        return m

    def admin_imap(self):
        return self.imap(self.admin)

    def _admin(self, *commands):
        m = self.admin_imap()
        try:
            for name, args in commands:
                typ, data = getattr(m, name)(*args)
                if typ != 'OK':
                    raise RuntimeError('IMAP %s %r failed: %r'
                                       % (name, args, data))
        finally:
            m.logout()

    def create_user(self, name):
        """CREATE user<sep>name as admin."""
        self._admin(('create', (imap_quote(self.mailbox(name)),)))

    def create_mailbox(self, name, lmtp_post=False):
        """CREATE an admin-namespace mailbox name (e.g. user/alice/Sub);
        lmtp_post=True also grants "anyone p" so LMTP user+Sub lands in it."""
        cmds = [('create', (imap_quote(name),))]
        if lmtp_post:
            cmds.append(('setacl', (imap_quote(name), 'anyone', 'p')))
        self._admin(*cmds)

    def setacl(self, mailbox, who, rights):
        """SETACL on an admin-namespace mailbox name as admin."""
        self._admin(('setacl', (imap_quote(mailbox), who, rights)))

    def deny(self, user):
        """cyr_deny: Cyrus refuses user every service (a suspended account).
        A proxy AUTHENTICATE for user still answers OK; the first command
        after it gets "* BYE [ALERT] Access to this service has been
        blocked" and the connection is closed."""
        subprocess.run([os.path.join(CYRUS_BIN, 'cyr_deny'), '-C',
                        self.imapd_conf, user], check=True, timeout=30,
                       stdin=subprocess.DEVNULL, user=CYRUS_USER,
                       group=CYRUS_GROUP)

    def anyone_can_post(self, mailbox):
        """True if "anyone" has the p right on the admin-namespace mailbox
        (GETACL as admin; costs an admin Login/Logout event pair)."""
        m = self.admin_imap()
        try:
            typ, data = m.getacl(imap_quote(mailbox))
        finally:
            m.logout()
        if typ != 'OK':
            raise RuntimeError('GETACL %s: %r' % (mailbox, data))
        text = b' '.join(d for d in data if isinstance(d, bytes)).decode()
        return any('p' in r for r in
                   re.findall(r'(?:^|\s)anyone\s+"?([a-z]*)', text))

    def deliver(self, user, msg_bytes, mailbox=None, sender='sender@example.com',
                via='tcp', grant_post=True):
        """Deliver msg_bytes with LMTP to user's INBOX, or to the folder
        ``mailbox`` (relative to INBOX, configured separator, ASCII, e.g.
        'Sub' or 'Sub/Child') using the address user+mailbox.

        lmtpd puts a message into user+Folder only if the delivering
        identity has the "p" (post) right on Folder: for the pre-authorized
        TCP service (-a) and the unix socket that identity is "anyone".
        Otherwise (and for a missing folder) Cyrus *silently* delivers to
        INBOX; even LMTP AUTH as admin does not help (admins only have "la"
        on user mailboxes).  So with grant_post=True (the default) deliver()
        first checks the folder's ACL and, if needed, runs
        SETACL <folder> anyone +p as admin: expect an admin Login/Logout
        pair, and the first time an AclChange (+ MailboxModseq), before the
        MessageNew.  grant_post=False delivers as is.
        via='tcp' or 'unix'.  Returns the LMTP reply (code, text).
        """
        if mailbox is not None and grant_post:
            folder = self.mailbox(user, *mailbox.split(self.sep))
            if not self.anyone_can_post(folder):
                self.setacl(folder, 'anyone', '+p')
        rcpt = user if mailbox is None else '%s+%s' % (user, mailbox)
        if via == 'unix':
            return lmtp_deliver((self.lmtp_socket,), sender, rcpt, msg_bytes)
        return lmtp_deliver(('127.0.0.1', self._lmtp_port), sender, rcpt, msg_bytes)


def lmtp_deliver(address, sender, rcpt, msg_bytes):
    """One LMTP transaction: smtplib.LMTP(*address), MAIL, RCPT, DATA;
    RuntimeError on any refusal. Returns the DATA reply (code, text)."""
    if isinstance(msg_bytes, str):
        msg_bytes = msg_bytes.encode()
    lmtp = smtplib.LMTP(*address, timeout=30)
    try:
        code, resp = lmtp.mail(sender)
        if code != 250:
            raise RuntimeError('LMTP MAIL: %d %r' % (code, resp))
        code, resp = lmtp.rcpt(rcpt)
        if code not in (250, 251):
            raise RuntimeError('LMTP RCPT %s: %d %r' % (rcpt, code, resp))
        code, resp = lmtp.data(msg_bytes)
        if code != 250:
            raise RuntimeError('LMTP DATA to %s: %d %r' % (rcpt, code, resp))
        return code, resp
    finally:
        try:
            lmtp.quit()
        except Exception:
            lmtp.close()


def make_message(subject='test', body='hello\r\n', sender='sender@example.com',
                 to='user@localhost', message_id=None):
    """A minimal RFC 5322 message as bytes."""
    message_id = message_id or '<%d.%d@harness.test>' % (time.time_ns(),
                                                          os.getpid())
    return ('From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n'
            'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n'
            'Content-Type: text/plain; charset=utf-8\r\n\r\n%s'
            % (sender, to, subject, message_id, body)).encode()


class NotifyListener:
    """AF_UNIX SOCK_DGRAM socket bound at path (mode 0777 so user cyrus can
    send), drained continuously by a background thread into a queue.

    Cyrus blocks imapd/lmtpd in sendto() once ~10 datagrams are queued
    (net.unix.max_dgram_qlen), so the socket must always be read promptly.
    """

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.settimeout(0.2)
        self.queue = queue.Queue()
        self.all = []          # every datagram ever received, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='notify-listener')
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                d = self.sock.recv(1 << 17)
            except socket.timeout:
                continue
            except OSError:
                break
            self.all.append(d)
            self.queue.put(d)

    def recv(self, timeout=5.0):
        """Next datagram (bytes), or None on timeout."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, quiet=0.5, timeout=10.0):
        """Datagrams until none arrives for `quiet` seconds."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.recv(quiet)
            if d is None:
                break
            out.append(d)
        return out

    def events(self, quiet=0.5, timeout=10.0):
        """drain() parsed to the JSON event dicts."""
        return [parse_notify(d)['event'] for d in self.drain(quiet, timeout)]

    def wait_event(self, predicate, timeout=10.0):
        """Parsed events up to and including the first one for which
        predicate(event) is true. Raises TimeoutError."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            d = self.recv(max(0.0, deadline - time.monotonic()))
            if d is None:
                raise TimeoutError('event not seen; got %r'
                                   % [e.get('event') for e in seen])
            ev = parse_notify(d)['event']
            seen.append(ev)
            if predicate(ev):
                return seen

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def parse_notify(dgram):
    """Split a Cyrus notify datagram into a dict; 'event' = parsed JSON."""
    import json
    fields = dgram.split(b'\0')
    method, klass, priority, user, mailbox, nopt = fields[:6]
    n = int(nopt)
    options = fields[6:6 + n]
    message = fields[6 + n]
    rest = fields[7 + n:]
    out = dict(method=method.decode(), klass=klass.decode(),
               priority=priority.decode(), user=user.decode(),
               mailbox=mailbox.decode(), options=[o.decode() for o in options],
               message=message.decode('utf-8', 'replace'),
               rest=rest)
    if out['klass'] == 'EVENT':
        out['event'] = json.loads(message)
    return out


# --------------------------------------------------------------------------
# Prosody

class Prosody:
    """A private Prosody 0.12 instance living in workdir."""

    domain = 'localhost'

    def __init__(self, workdir, component_domain='events.localhost',
                 secret='s3cret', log_level='debug', extra_config=''):
        self.workdir = os.path.abspath(workdir)
        self.base = os.path.join(self.workdir, 'prosody')
        self.component_domain = component_domain
        self.secret = secret
        self.log_level = log_level
        self.extra_config = extra_config
        self.config = os.path.join(self.base, 'prosody.cfg.lua')
        self.pidfile = os.path.join(self.base, 'prosody.pid')
        self.logfile = os.path.join(self.base, 'prosody.log')
        self.outfile = os.path.join(self.base, 'prosody.out')
        self._c2s_port = None
        self._component_port = None
        self.proc = None

    @property
    def c2s_port(self):
        return self._c2s_port

    @property
    def component_port(self):
        return self._component_port

    def _write_config(self):
        os.makedirs(os.path.join(self.base, 'data'), exist_ok=True)
        os.makedirs(os.path.join(self.base, 'certs'), exist_ok=True)
        with open(self.config, 'w') as f:
            f.write('''-- generated by tests/integration/harness.py
pidfile = "%(base)s/prosody.pid"
data_path = "%(base)s/data"
certificates = "%(base)s/certs"
run_as_root = true
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %(c2s)d }
c2s_direct_tls_ports = { }
component_ports = { %(comp)d }
component_interfaces = { "127.0.0.1" }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix"; }
modules_disabled = { "s2s"; "tls"; }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
network_settings = { nagle = false }
log = { { levels = { min = "%(level)s" }, to = "file", filename = "%(base)s/prosody.log" } }

VirtualHost "localhost"

Component "%(domain)s"
    component_secret = "%(secret)s"
%(extra)s
''' % dict(base=self.base, c2s=self._c2s_port, comp=self._component_port,
           level=self.log_level, domain=self.component_domain,
           secret=self.secret, extra=self.extra_config))

    def start(self, timeout=15.0):
        os.makedirs(self.workdir, exist_ok=True)
        # a restart keeps the ports, as a real server's restart would
        if self._c2s_port is None:
            self._c2s_port = free_port()
            self._component_port = free_port()
            while self._component_port == self._c2s_port:
                self._component_port = free_port()
        self._write_config()
        out = open(self.outfile, 'ab')
        self.proc = subprocess.Popen(['prosody', '--config', self.config, '-F'],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError('prosody exited with %s; see %s and %s'
                                   % (self.proc.returncode, self.outfile,
                                      self.logfile))
            return port_open(self._c2s_port) and port_open(self._component_port)
        try:
            wait_until(ready, timeout, what='prosody ports')
        except Exception:
            self.stop()
            raise
        return self

    def prosodyctl(self, *args, check=True):
        return subprocess.run(['prosodyctl', '--config', self.config] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=check, timeout=30)

    def register(self, user, password):
        """Create account user@localhost."""
        r = self.prosodyctl('register', user, self.domain, password)
        return r

    def jid(self, user):
        return '%s@%s' % (user, self.domain)

    def stop(self, timeout=10.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


# --------------------------------------------------------------------------
# synchronous XMPP client

class XmppClient:
    """slixmpp ClientXMPP with its asyncio loop in a background thread.

    All received <message/> stanzas are put on ``self.messages`` (a
    queue.Queue) as xml.etree.ElementTree Elements in the jabber:client
    namespace (tags like '{jabber:client}message').
    """

    def __init__(self, plugins=('xep_0030', 'xep_0004', 'xep_0060')):
        self.plugins = plugins
        self.messages = queue.Queue()
        self.xmpp = None
        self.jid = None
        self._loop = None
        self._thread = None

    # -- loop plumbing
    def _start_loop(self, name):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=name, daemon=True)
        self._thread.start()

    def _session_started(self, x, failures):
        """A future of self._loop resolved when x's session starts, or
        failed by the first of failures (slixmpp event -> function of the
        event giving the error text) that comes before."""
        started = self._loop.create_future()

        def done(result=None, exc=None):
            if not started.done():
                if exc:
                    started.set_exception(exc)
                else:
                    started.set_result(result)
        x.add_event_handler('session_start', lambda ev: done(True))
        for name, text in failures.items():
            x.add_event_handler(name, lambda ev, text=text: done(
                exc=RuntimeError(text(ev))))
        return started

    def _call(self, coro, timeout):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def connect(self, jid, password, host='127.0.0.1', port=5222,
                timeout=15.0, presence=True):
        """Connect in plain text (no TLS) and block until session_start."""
        import slixmpp
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        self._start_loop('xmpp-%s' % jid)

        async def setup():
            x = slixmpp.ClientXMPP(jid, password, plugin_config={
                'feature_mechanisms': {'unencrypted_plain': True}})
            x.loop = self._loop
            for p in self.plugins:
                x.register_plugin(p)
            started = self._session_started(x, {
                'failed_all_auth': lambda ev: 'XMPP auth failed for %s' % jid,
                'connection_failed': lambda ev: 'XMPP connection failed: %s' % (ev,)})
            x.register_handler(Callback(
                'harness messages', MatchXPath('{%s}message' % NS_CLIENT),
                lambda st: self.messages.put(copy.deepcopy(st.xml))))
            x.connect((host, port), use_ssl=False, force_starttls=False,
                      disable_starttls=True)
            self.xmpp = x
            await asyncio.wait_for(started, timeout)
            self.jid = str(x.boundjid)
            if presence:
                x.send_presence()
                # round trip so the server has processed the presence
                from slixmpp.stanza import Iq
                ping = Iq(x, stype='get', sto=x.boundjid.host)
                ping.append(ET.Element('{urn:xmpp:ping}ping'))
                await ping.send(timeout=timeout)
        try:
            self._call(setup(), timeout + 5)
        except BaseException:
            self.disconnect()
            raise
        return self

    @staticmethod
    def _to_element(stanza):
        if isinstance(stanza, (str, bytes)):
            if isinstance(stanza, bytes):
                stanza = stanza.decode()
            return ET.fromstring("<w xmlns='%s'>%s</w>" % (NS_CLIENT, stanza))[0]
        if isinstance(stanza, ET.Element):
            if stanza.tag.startswith('{'):
                return stanza
            return XmppClient._to_element(ET.tostring(stanza, 'unicode'))
        return stanza.xml  # a slixmpp stanza object

    def iq(self, stanza, timeout=10.0):
        """Send an IQ (XML string, Element or slixmpp stanza) and return the
        reply, result or error, as an Element. Raises TimeoutError."""
        from slixmpp.exceptions import IqError, IqTimeout
        from slixmpp.stanza import Iq
        elem = self._to_element(stanza)

        async def go():
            iq = Iq(self.xmpp, xml=copy.deepcopy(elem))
            if not iq['id']:
                iq['id'] = self.xmpp.new_id()
            try:
                reply = await iq.send(timeout=timeout)
            except IqError as e:
                reply = e.iq
            except IqTimeout:
                raise TimeoutError('no reply to iq id=%s' % iq['id'])
            return copy.deepcopy(reply.xml)
        return self._call(go(), timeout + 5)

    def iq_all(self, stanzas, timeout=30.0):
        """Send all the IQs at once (pipelined, without waiting for a reply
        in between) and return their replies in order; None for an IQ
        that got no reply within timeout."""
        from slixmpp.exceptions import IqError, IqTimeout
        from slixmpp.stanza import Iq
        elems = [self._to_element(s) for s in stanzas]

        async def one(elem):
            iq = Iq(self.xmpp, xml=copy.deepcopy(elem))
            iq['id'] = self.xmpp.new_id()
            try:
                return copy.deepcopy((await iq.send(timeout=timeout)).xml)
            except IqError as e:
                return copy.deepcopy(e.iq.xml)
            except IqTimeout:
                return None

        async def go():
            return await asyncio.gather(*(one(e) for e in elems))
        return self._call(go(), timeout + 5)

    def send(self, stanza):
        """Send any stanza (XML string/Element/slixmpp stanza) as is."""
        from slixmpp.xmlstream import StanzaBase
        elem = self._to_element(stanza)

        def go():
            self.xmpp.send(StanzaBase(self.xmpp, xml=copy.deepcopy(elem)))
        self._loop.call_soon_threadsafe(go)

    def send_message(self, to, body, mtype='chat'):
        def go():
            self.xmpp.send_message(mto=to, mbody=body, mtype=mtype)
        self._loop.call_soon_threadsafe(go)

    def wait_message(self, predicate=None, timeout=10.0):
        """First queued message for which predicate(elem) is true (others
        seen meanwhile are dropped). Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('no matching message within %.1fs' % timeout)
            try:
                m = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if predicate is None or predicate(m):
                return m

    def disconnect(self, timeout=5.0):
        if self._loop is None:
            return
        x = self.xmpp

        async def go():
            if x is not None:
                try:
                    await asyncio.wait_for(x.disconnect(wait=timeout / 2),
                                           timeout)
                except Exception:
                    x.abort()
        async def cancel_rest():
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        try:
            if self._loop.is_running():
                self._call(go(), timeout + 2)
        except Exception:
            pass
        try:
            if self._loop.is_running():
                self._call(cancel_rest(), timeout)
        except Exception:
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._loop.is_running():
                self._loop.close()
            self._loop = None
            self.xmpp = None


# --------------------------------------------------------------------------
# the daemon under test (or any command)

class Daemon:
    """Run argv in the background with stdout+stderr to workdir/<name>.log."""

    def __init__(self, workdir, argv, name='mailpubsubd', env=None, cwd=None):
        self.workdir = os.path.abspath(workdir)
        self.argv = list(argv)
        self.name = name
        self.env = env
        self.cwd = cwd
        self.logfile = os.path.join(self.workdir, name + '.log')
        self.proc = None
        self._pos = 0

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        # the log is appended to across restarts: wait_log looks at what
        # this run writes
        self._pos = len(self.log())
        with open(self.logfile, 'ab') as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=self.cwd,
                                         start_new_session=True)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGTERM):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        """Wait for exit; return the exit status (negative = signal)."""
        return self.proc.wait(timeout)

    def stop(self, timeout=10.0):
        """SIGTERM, wait, SIGKILL if needed; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log(self):
        try:
            with open(self.logfile, 'r', errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def wait_log(self, regex, timeout=10.0, from_start=False):
        """Wait for a log line matching regex (searched in text written
        after the previous successful wait_log unless from_start); return
        the re.Match. Raises TimeoutError (and notes an early exit)."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        start = 0 if from_start else self._pos
        while True:
            text = self.log()
            for m in pat.finditer(text, start):
                self._pos = m.end()
                return m
            if time.monotonic() >= deadline:
                status = ('' if self.running()
                          else ' (process exited with %s)' % self.returncode)
                raise TimeoutError('%r not in %s within %.1fs%s'
                                   % (regex, self.logfile, timeout, status))
            time.sleep(0.05)
