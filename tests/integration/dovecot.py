"""A private Dovecot 2.3 instance for the integration tests.

Mirrors harness.Cyrus: start()/stop(), imap(), deliver(), create_user(),
create_mailbox(), setacl(), imap_port/lmtp_port, sep.  Debian packages:
dovecot-core (which also ships the push_notification Lua driver and the acl
plugin), dovecot-imapd (imap_acl), dovecot-lmtpd, lua-socket, lua-cjson.

Events go through examples/dovecot/mailpubsub.lua (the push_notification Lua
driver) to mailpubsubd's generic JSON source: one JSON object per line on the
Unix stream socket ``event_socket``, one acknowledgement line back per event.
The script only sends when something listens there; with nothing listening
it logs "mailpubsub: ..." to the Dovecot log and drops the events.

Layout under workdir/dovecot: dovecot.conf, passwd (users and the master
user ``proxy``), home/<user>/mail (sdbox), dovecot.log, run/ (base_dir,
with master.pid), state/ and mailpubsub.lua (a copy of the script: lmtp
reads it as uid mail, which cannot enter a clone under /root).  Mail processes run as the Debian system user
``mail`` (uid 8, gid 8, exists on every Debian; group mail is also what
mailpubsubd's [json] socket_group defaults to); Dovecot's own login and
internal users (dovenull, dovecot) come with dovecot-core.

Must run as root (the master binds and then drops privileges).  Never
touches a system Dovecot: own config, base_dir, state_dir, ports on
127.0.0.1 and log; stopped by the recorded PID of its master.
"""

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

from harness import (free_port, imap_quote, kill_and_wait, lmtp_deliver, pid_alive,
                     pids_with_cmdline, port_open, wait_until)

DOVECOT_BIN = '/usr/sbin/dovecot'
# dovecot-imapd conflicts with cyrus-imapd (both provide imap-server), so
# scripts/dovecot-imapd.sh unpacks it here; a system dovecot-imapd is used
# when installed instead.
IMAPD_ROOT = os.environ.get('MAILPUBSUB_DOVECOT_IMAPD',
                            '/var/cache/mailpubsub-tests/dovecot-imapd')


IMAP_SERVICES = ('imap', 'imap-login', 'imap-hibernate', 'imap-urlauth',
                 'imap-urlauth-login', 'imap-urlauth-worker')


def imapd_paths():
    """(directory of the imap binaries, mail_plugin_dir)."""
    if os.path.exists('/usr/lib/dovecot/imap'):
        return '/usr/lib/dovecot', '/usr/lib/dovecot/modules'
    bindir = os.path.join(IMAPD_ROOT, 'usr/lib/dovecot')
    if not os.access(os.path.join(bindir, 'imap'), os.X_OK):
        raise RuntimeError('no Dovecot imap server: run scripts/deps.sh')
    return bindir, os.path.join(IMAPD_ROOT, 'modules')
MAIL_USER = 'mail'
AUTH_GROUP = 'dovecot'
LUA_SCRIPT = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'examples',
    'dovecot', 'mailpubsub.lua'))

# Unix socket paths (base_dir/...) must fit in sun_path (108 bytes); the
# longest one Dovecot creates is about 30 bytes past base_dir.
_MAX_BASE_DIR = 70


class Dovecot:
    """A private Dovecot 2.3 instance living in workdir/dovecot.

    Mailbox names are as the user sees them (personal namespace, prefix "",
    separator '/', INBOX at the top): 'INBOX', 'Sub', 'Sub/Child'.  Another
    user's folders appear in the shared namespace as 'shared/<owner>/<name>'
    once the owner granted at least "l" on them.
    """

    sep = '/'
    shared_prefix = 'shared/'

    def __init__(self, workdir, event_socket, users=('alice', 'bob'),
                 password='pw', master_user='proxy', lua_script=None,
                 server_name='localhost', extra_config=''):
        self.workdir = os.path.abspath(workdir)
        self.base = os.path.join(self.workdir, 'dovecot')
        self.event_socket = event_socket
        self.users = list(users)
        self.password = password
        self.master_user = master_user
        self.lua_script = lua_script or LUA_SCRIPT
        # what lmtp (uid mail) loads: a copy in our own tree, because the
        # clone may live where uid mail cannot read (/root is 0700)
        self.lua_copy = os.path.join(self.base, 'mailpubsub.lua')
        self.server_name = server_name
        self.extra_config = extra_config
        self.config = os.path.join(self.base, 'dovecot.conf')
        self.passwd = os.path.join(self.base, 'passwd')
        self.masterdb = os.path.join(self.base, 'master-users')
        self.home_root = os.path.join(self.base, 'home')
        self.logfile = os.path.join(self.base, 'dovecot.log')
        self.outfile = os.path.join(self.base, 'dovecot.out')
        self.state_dir = os.path.join(self.base, 'state')
        base_dir = os.path.join(self.base, 'run')
        self._own_base_dir = len(base_dir) > _MAX_BASE_DIR
        self.base_dir = (tempfile.mkdtemp(prefix='dovecot-', dir='/tmp')
                         if self._own_base_dir else base_dir)
        self.pidfile = os.path.join(self.base_dir, 'master.pid')
        self._imap_port = None
        self._lmtp_port = None
        self.proc = None
        self.pid = None
        pw = pwd.getpwnam(MAIL_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    @property
    def imap_port(self):
        return self._imap_port

    @property
    def lmtp_port(self):
        return self._lmtp_port

    def choose_ports(self):
        """Picks the IMAP and LMTP ports now (kept across restarts)."""
        if self._imap_port is None:
            self._imap_port = free_port()
            self._lmtp_port = free_port()
            while self._lmtp_port == self._imap_port:
                self._lmtp_port = free_port()
        return self._imap_port, self._lmtp_port

    def home(self, user):
        return os.path.join(self.home_root, user)

    # ---- configuration ---------------------------------------------------

    def _write_config(self):
        for d in (self.base, self.home_root, self.state_dir):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)
        os.chown(self.home_root, self.uid, self.gid)
        with open(self.masterdb, 'w') as f:
            f.write('%s:{PLAIN}%s\n' % (self.master_user, self.password))
        if not os.path.exists(self.passwd):
            open(self.passwd, 'w').close()
        # read by the auth process, which runs as user dovecot
        dgid = grp.getgrnam(AUTH_GROUP).gr_gid
        for f in (self.masterdb, self.passwd):
            os.chown(f, 0, dgid)
            os.chmod(f, 0o640)
        for u in self.users:
            self._add_passwd_line(u)
        shutil.copyfile(self.lua_script, self.lua_copy)
        os.chmod(self.lua_copy, 0o644)
        bindir, plugin_dir = imapd_paths()
        conf = CONFIG_TEMPLATE % dict(
            plugin_dir=plugin_dir, services=''.join(
                'service %s {\n  executable = %s/%s\n}\n' % (n, bindir, n)
                for n in IMAP_SERVICES),
            base_dir=self.base_dir, state_dir=self.state_dir,
            log=self.logfile, imap=self._imap_port, lmtp=self._lmtp_port,
            passwd=self.passwd, masterdb=self.masterdb,
            home_root=self.home_root, uid=self.uid, gid=self.gid,
            lua=self.lua_copy, sock=self.event_socket,
            server=self.server_name, shared_dict=os.path.join(
                self.home_root, 'shared-mailboxes.db'),
            extra=self.extra_config)
        with open(self.config, 'w') as f:
            f.write(conf)

    def _add_passwd_line(self, name):
        if ':' in name or '\n' in name or '/' in name:
            raise ValueError('bad user name %r' % name)
        with open(self.passwd) as f:
            if any(l.split(':', 1)[0] == name for l in f):
                return False
        with open(self.passwd, 'a') as f:
            f.write('%s:{PLAIN}%s::::%s::\n'
                    % (name, self.password, self.home(name)))
        return True

    # ---- life cycle ------------------------------------------------------

    def start(self, timeout=20.0):
        """Writes the config and runs the master in the foreground (-F) as a
        child in its own session; returns when the IMAP greeting and the
        LMTP port answer.  Ready in ~0.3 s."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError('already running')
        if not os.path.exists(self.lua_script):
            raise RuntimeError('Lua script %s missing' % self.lua_script)
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.choose_ports()
        self._write_config()
        with open(self.outfile, 'ab') as out:
            self.proc = subprocess.Popen(
                [DOVECOT_BIN, '-F', '-c', self.config],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.pid = self.proc.pid
        try:
            wait_until(self._greeting_ok, timeout, interval=0.05,
                       what='dovecot IMAP greeting on port %d'
                       % self._imap_port)
            wait_until(lambda: port_open(self._lmtp_port), timeout,
                       what='dovecot LMTP port')
        except Exception:
            self.stop()
            raise
        return self

    def _greeting_ok(self):
        if self.proc.poll() is not None:
            raise RuntimeError('dovecot exited with %s; see %s and %s'
                               % (self.proc.returncode, self.outfile,
                                  self.logfile))
        try:
            with socket.create_connection(('127.0.0.1', self._imap_port),
                                          timeout=2) as s:
                s.settimeout(2)
                return s.recv(512).startswith(b'* OK')
        except OSError:
            return False

    def leftover_pids(self):
        """Live processes of this instance: the master (recorded PID), its
        descendants (imap, lmtp, auth, log, ...), and Dovecot binaries that
        outlived a killed master (found by open files under our base_dir or
        work tree).  Never matches another instance."""
        out = []
        if self.pid and pid_alive(self.pid):
            out.append(self.pid)
        out.extend(p for p in self._descendants(self.pid) if pid_alive(p))
        out.extend(p for p in self._orphans() if p not in out)
        return out

    @staticmethod
    def _children_map():
        kids = {}
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(')') + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
        return kids

    def _descendants(self, pid):
        if not pid:
            return []
        kids, out, todo = self._children_map(), [], [pid]
        while todo:
            for c in kids.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out

    def _orphans(self):
        """Dovecot processes whose cwd or open files are in our base_dir
        or home tree (children left behind by a killed master)."""
        found = []
        roots = (self.base_dir + '/', self.base + '/')
        for pid in pids_with_cmdline('dovecot'):
            try:
                exe = os.readlink('/proc/%d/exe' % pid)
            except OSError:
                continue
            if not (exe.startswith(('/usr/lib/dovecot/', IMAPD_ROOT + '/'))
                    or exe == DOVECOT_BIN):
                continue
            try:
                fds = os.listdir('/proc/%d/fd' % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
                except OSError:
                    continue
                if target.startswith(roots):
                    found.append(pid)
                    break
        return found

    def stop(self, timeout=10.0):
        """SIGTERM the master (recorded PID), which stops its children;
        wait, SIGKILL what is left, including any process of ours that
        outlived it.  Idempotent.  Takes ~0.1-1 s."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            kill_and_wait(self.leftover_pids(), 5.0)
            self.proc = None
            self.pid = None
            if self._own_base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def reload(self):
        """SIGHUP the master (re-reads dovecot.conf)."""
        os.kill(self.pid, 1)

    # ---- clients ---------------------------------------------------------

    def imap(self, user, password=None):
        """A logged-in imaplib.IMAP4 for user (LOGIN user pw).  Logging in
        costs no event (push_notification has no Login/Logout)."""
        m = imaplib.IMAP4('127.0.0.1', self._imap_port, timeout=30)
        m.login(user, password or self.password)
        return m

    def master_imap(self, user):
        """Logged in *as* user through the master user: AUTHENTICATE PLAIN
        with authzid=user, authcid=proxy, password pw.  The session then is
        user's (MYRIGHTS answers user's rights).  No event."""
        m = imaplib.IMAP4('127.0.0.1', self._imap_port, timeout=30)
        cred = ('%s\0%s\0%s' % (user, self.master_user,
                                self.password)).encode()
        m.authenticate('PLAIN', lambda _challenge: cred)
        return m

    def _as(self, user, *commands):
        m = self.imap(user)
        try:
            out = []
            for name, args in commands:
                typ, data = getattr(m, name)(*args)
                if typ != 'OK':
                    raise RuntimeError('IMAP %s %r as %s failed: %r'
                                       % (name, args, user, data))
                out.append(data)
            return out
        finally:
            m.logout()

    def create_user(self, name):
        """Adds name to the passwd-file (password self.password); effective
        at once (no reload).  Costs no event; the home and INBOX are made
        when first used: the first LMTP delivery or the first IMAP command
        that opens INBOX (SELECT, STATUS, APPEND; LOGIN alone does not)
        sends a MailboxCreate for INBOX before anything else."""
        if name not in self.users:
            self.users.append(name)
        self._add_passwd_line(name)

    def create_mailbox(self, user, name):
        """CREATE name as user (names as the user sees them, '/' separated).
        Costs one MailboxCreate, for name only: unlike Cyrus, Dovecot does
        not create missing parents as mailboxes (CREATE a/b leaves "a" a
        \\NoSelect directory, with no event).  No MailboxSubscribe."""
        self._as(user, ('create', (imap_quote(name),)))

    def setacl(self, user, mailbox, who, rights):
        """SETACL mailbox who rights as its owner user (rights may start
        with + or -); rights=None runs DELETEACL mailbox who.  "anyone" and
        "authenticated" are allowed (acl_anyone = allow).  Costs no event:
        Dovecot's push_notification has no ACL event."""
        if rights is None:
            self._as(user, ('deleteacl', (imap_quote(mailbox), who)))
        else:
            self._as(user, ('setacl', (imap_quote(mailbox), who, rights)))

    def deliver(self, user, msg_bytes, mailbox=None,
                sender='sender@example.com'):
        """LMTP delivery over TCP to user's INBOX, or with mailbox to
        user+mailbox (lmtp_save_to_detail_mailbox: it lands in that folder
        if it exists, else in INBOX; no ACL needed).  Costs one MessageNew
        (into the folder it landed in).  Returns the LMTP (code, text)."""
        rcpt = user if mailbox is None else '%s+%s' % (user, mailbox)
        return lmtp_deliver(('127.0.0.1', self._lmtp_port), sender, rcpt, msg_bytes)


CONFIG_TEMPLATE = '''# generated by tests/integration/dovecot.py
# A private instance: nothing here is shared with a system Dovecot.
base_dir = %(base_dir)s
state_dir = %(state_dir)s
instance_name = dovecot-test
log_path = %(log)s
info_log_path = %(log)s
debug_log_path = %(log)s
protocols = imap lmtp
mail_plugin_dir = %(plugin_dir)s
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
hostname = %(server)s
postmaster_address = postmaster@localhost
shutdown_clients = yes
verbose_proctitle = yes

first_valid_uid = %(uid)d
first_valid_gid = %(gid)d
mail_uid = %(uid)d
mail_gid = %(gid)d
mail_location = sdbox:~/mail
mail_home = %(home_root)s/%%u

namespace inbox {
  inbox = yes
  separator = /
  prefix =
}
namespace shared {
  type = shared
  separator = /
  prefix = shared/%%%%u/
  location = sdbox:%%%%h/mail:INDEXPVT=~/shared/%%%%u
  subscriptions = no
  list = children
}

passdb {
  driver = passwd-file
  args = %(masterdb)s
  master = yes
  pass = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %(passwd)s
}
userdb {
  driver = passwd-file
  args = username_format=%%u %(passwd)s
  default_fields = uid=%(uid)d gid=%(gid)d home=%(home_root)s/%%u
}

mail_plugins = $mail_plugins acl notify push_notification mail_lua push_notification_lua
protocol imap {
  mail_plugins = $mail_plugins imap_acl
}
protocol lmtp {
  mail_plugins = $mail_plugins
}
lmtp_save_to_detail_mailbox = yes
recipient_delimiter = +

plugin {
  acl = vfile
  # a master-user login gets the *target* user's rights (default: the
  # master user's, i.e. nothing)
  acl_user = %%u
  # let SETACL name "anyone" and "authenticated" (refused by default)
  acl_anyone = allow
  acl_shared_dict = file:%(shared_dict)s
  push_notification_driver = lua:file=%(lua)s
  mailpubsub_socket = %(sock)s
  mailpubsub_server = %(server)s
  mailpubsub_timeout = 2
}

%(services)s
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(imap)d
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %(lmtp)d
  }
}
%(extra)s
'''
