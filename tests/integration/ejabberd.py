"""A private ejabberd 23.01 instance for the integration tests and the
fan-out benchmark.

Mirrors harness.Prosody: start()/stop(), c2s_port, component_port, secret,
register(), jid(); plus register_many() and cpu-time accounting (pid).
Debian package: ejabberd (which brings Erlang/OTP 25).

Layout under workdir/ejabberd: ejabberd.yml, spool/ (Mnesia; the
pubsub tables are turned into RAM tables at start), log/ (ejabberd.log, crash dump),
ejabberd.out (the VM's stdout/stderr) and home/ (HOME of the VM, so no
~/.erlang.cookie of root's is read or written).

Never touches a system ejabberd: the VM is started directly with erl (not
through ejabberdctl, which runs as user ejabberd from /var/lib/ejabberd),
as root, with its own node name, cookie, Mnesia dir and config; its
distribution port and its own epmd (a child of ours, foreground, on a free
port) listen on 127.0.0.1 only; both are stopped by their recorded PIDs.

Users are written through erl_call (erl_interface's C client: it talks the
distribution protocol to our node straight at its fixed port, so no VM
boots and no epmd lookup happens): one call evaluates one expression that
runs ejabberd_auth:try_register/3, what `ejabberdctl register` runs, for a
whole batch.  1000 users take well under a second.
"""

import os
import secrets
import subprocess

from harness import free_port, kill_and_wait, pid_alive, port_open, wait_until

ERL = '/usr/bin/erl'
EPMD = '/usr/bin/epmd'
ERL_CALL = '/usr/bin/erl_call'
ERL_LIBS = '/usr/lib/x86_64-linux-gnu'   # where Debian puts ejabberd-23.01/

# mod_pubsub keeps items in a disc_only (dets) Mnesia table, one file
# write per publish; Prosody's mod_pubsub is compared with storage =
# "memory".  ejabberd.schema in the spool cannot say otherwise for a fresh
# spool: 23.01's ejabberd_mnesia creates a missing table with the module's
# defaults and applies the schema file only from the next start on.  So
# start() converts these tables once ejabberd is up.
RAM_TABLES = ('pubsub_node', 'pubsub_state', 'pubsub_item', 'pubsub_orphan')


def _q(s):
    """s as a YAML double-quoted string."""
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


def _erl_binary(s):
    """s as an Erlang binary literal (UTF-8)."""
    return '<<"%s"/utf8>>' % s.replace('\\', '\\\\').replace('"', '\\"')


class Ejabberd:
    """A private ejabberd 23.01 instance living in workdir/ejabberd.

    component_domains: the XEP-0114 components the ejabberd_service
    listener accepts, all with `secret`.  pubsub_host and multicast_host
    are mod_pubsub's and mod_multicast's services; any local user may
    create pubsub nodes there.
    """

    domain = 'localhost'

    def __init__(self, workdir, component_domain='events.localhost',
                 secret='s3cret', extra_components=(), log_level='info',
                 pubsub_host='pubsub.localhost',
                 multicast_host='multicast.localhost', pubsub_creators=()):
        self.workdir = os.path.abspath(workdir)
        self.base = os.path.join(self.workdir, 'ejabberd')
        self.component_domain = component_domain
        self.component_domains = (component_domain,) + tuple(extra_components)
        self.secret = secret
        self.log_level = log_level
        self.pubsub_host = pubsub_host
        self.multicast_host = multicast_host
        # domains (components) that may create pubsub nodes besides local
        # users: mailpubsubd's [delegate] mirrors subscriptions there
        self.pubsub_creators = tuple(pubsub_creators)
        self.config = os.path.join(self.base, 'ejabberd.yml')
        self.spool = os.path.join(self.base, 'spool')
        self.logdir = os.path.join(self.base, 'log')
        self.logfile = os.path.join(self.logdir, 'ejabberd.log')
        self.outfile = os.path.join(self.base, 'ejabberd.out')
        self.home = os.path.join(self.base, 'home')
        # a node name of its own: another instance (or the system's
        # ejabberd@localhost) registered in some epmd is never confused
        self.node = 'mailpubsub-%s@localhost' % secrets.token_hex(4)
        self.cookie = secrets.token_hex(16)
        self._c2s_port = None
        self._component_port = None
        self._dist_port = None
        self._epmd_port = None
        self.proc = None
        self.epmd = None

    @property
    def c2s_port(self):
        return self._c2s_port

    @property
    def component_port(self):
        return self._component_port

    @property
    def pid(self):
        """The beam.smp process (erl execs into it)."""
        return self.proc.pid if self.proc else None

    def jid(self, user):
        return '%s@%s' % (user, self.domain)

    # ---- configuration ---------------------------------------------------

    def _write_config(self):
        for d in (self.base, self.spool, self.logdir, self.home):
            os.makedirs(d, exist_ok=True)
        components = ''.join('      %s:\n        password: %s\n' % (_q(d), _q(self.secret))
                             for d in self.component_domains)
        with open(self.config, 'w') as f:
            f.write(CONFIG_TEMPLATE % dict(
                level=self.log_level, c2s=self._c2s_port,
                comp=self._component_port, components=components,
                pubsub=_q(self.pubsub_host), multicast=_q(self.multicast_host),
                creators=''.join('      - %s\n' % _q(d) for d in
                                 self.pubsub_creators or ('localhost',))))

    def _choose_ports(self):
        # a restart keeps the ports, as a real server's restart would
        if self._c2s_port is None:
            ports = set()
            while len(ports) < 4:
                ports.add(free_port())
            (self._c2s_port, self._component_port, self._dist_port,
             self._epmd_port) = sorted(ports)

    def _env(self):
        env = dict(os.environ)
        env.update({
            'HOME': self.home,
            'EJABBERD_CONFIG_PATH': self.config,
            'EJABBERD_LOG_PATH': self.logfile,
            'ERL_CRASH_DUMP': os.path.join(self.logdir, 'erl_crash.dump'),
            'ERL_LIBS': ERL_LIBS,
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'ERL_EPMD_PORT': str(self._epmd_port),
            'ERL_MAX_PORTS': '32000',
            'ERL_MAX_ETS_TABLES': '1400',
        })
        return env

    # ---- life cycle ------------------------------------------------------

    def start(self, timeout=30.0):
        """Starts epmd and the VM (as ejabberdctl foreground would, minus
        su); returns when the c2s and component listeners accept, which
        ejabberd opens last.  Up in ~3 s."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError('already running')
        os.makedirs(self.workdir, exist_ok=True)
        self._choose_ports()
        self._write_config()
        env = self._env()
        out = open(self.outfile, 'ab')
        try:
            if self.epmd is None or self.epmd.poll() is not None:
                self.epmd = subprocess.Popen(
                    [EPMD, '-address', '127.0.0.1', '-port', str(self._epmd_port)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True)
                wait_until(lambda: self._alive(self.epmd, 'epmd') and
                           port_open(self._epmd_port), 10, what='epmd')
            self.proc = subprocess.Popen(
                [ERL, '-sname', self.node, '-setcookie', self.cookie,
                 '+K', 'true', '+P', '250000', '-noinput',
                 # no VM of ours starts a shared epmd on 4369
                 '-start_epmd', 'false',
                 '-kernel', 'inet_dist_use_interface', '{127,0,0,1}',
                 '-kernel', 'inet_dist_listen_min', str(self._dist_port),
                 '-kernel', 'inet_dist_listen_max', str(self._dist_port),
                 '-mnesia', 'dir', '"%s"' % self.spool,
                 '-s', 'ejabberd'],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=self.spool, start_new_session=True)
        finally:
            out.close()

        def ready():
            self._alive(self.proc, 'ejabberd')
            return port_open(self._c2s_port) and port_open(self._component_port)

        def started():
            # the listeners open before the application has finished
            # starting (the auth tables may not exist yet)
            self._alive(self.proc, 'ejabberd')
            try:
                return self.eval('lists:keymember(ejabberd, 1, '
                                 'application:which_applications()).') == 'true'
            except RuntimeError:   # the distribution is not accepting yet
                return False
        try:
            wait_until(ready, timeout, interval=0.1, what='ejabberd listeners')
            wait_until(started, timeout, interval=0.1, what='ejabberd started')
            self._pubsub_in_ram()
        except Exception:
            self.stop()
            raise
        return self

    def _pubsub_in_ram(self):
        expr = ('[{T, mnesia:change_table_copy_type(T, node(), ram_copies)} '
                '|| T <- [%s], mnesia:table_info(T, storage_type) =/= ram_copies], '
                '[mnesia:table_info(T, storage_type) || T <- [%s]].'
                % (', '.join(RAM_TABLES), ', '.join(RAM_TABLES)))
        got = self.eval(expr)
        if got != '[%s]' % ', '.join(['ram_copies'] * len(RAM_TABLES)):
            raise RuntimeError('ejabberd: pubsub tables not in RAM: %s' % got)

    def _alive(self, proc, what):
        if proc.poll() is not None:
            raise RuntimeError('%s exited with %s; see %s and %s'
                               % (what, proc.returncode, self.outfile, self.logfile))
        return True

    def stop(self, timeout=15.0):
        """init:stop() over the distribution (Mnesia closes cleanly), then
        SIGTERM/SIGKILL by PID if that did not end it; then our epmd.
        Idempotent.  Takes ~1-2 s."""
        try:
            if self.proc is not None:
                if self.proc.poll() is None:
                    try:
                        self.eval('init:stop().', timeout=5)
                    except Exception:
                        pass
                    try:
                        self.proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        pass
                if self.proc.poll() is None:
                    kill_and_wait([self.proc.pid], 5.0)
                    self.proc.wait(5)
        finally:
            self.proc = None
            if self.epmd is not None:
                if self.epmd.poll() is None:
                    self.epmd.terminate()
                    try:
                        self.epmd.wait(5)
                    except subprocess.TimeoutExpired:
                        self.epmd.kill()
                        self.epmd.wait(5)
                self.epmd = None

    def log(self):
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    # ---- administration --------------------------------------------------

    def eval(self, expressions, timeout=60):
        """Evaluates Erlang expressions (ending in '.') on the node; returns
        the value of the last one as erl_call prints it."""
        if self.proc is None or not pid_alive(self.proc.pid):
            raise RuntimeError('ejabberd is not running')
        r = subprocess.run(
            # a client node name of its own: two calls under one name (the
            # default, or -r's) make the second fail to connect
            [ERL_CALL, '-h', 'ctl-%s' % secrets.token_hex(6),
             '-address', '127.0.0.1:%d' % self._dist_port,
             '-c', self.cookie, '-timeout', str(int(timeout)), '-e'],
            input=expressions + '\n', capture_output=True, text=True,
            timeout=timeout + 5, env=self._env())
        out = r.stdout.strip()
        if r.returncode != 0 or not (out.startswith('{ok,') and out.endswith('}')):
            raise RuntimeError('erl_call: %s %s' % (out, r.stderr))
        return out[4:-1].strip()

    def register_many(self, users, password):
        """Creates user@localhost for every name in users, one erl_call for
        all of them; an existing account keeps its password."""
        users = list(users)
        if not users:
            return
        expr = ('Ps = %s, H = %s, '
                'Bad = [{U, R} || U <- [%s], R <- [ejabberd_auth:try_register(U, H, Ps)], '
                'R =/= ok, R =/= {error, exists}], '
                'Bad.'
                % (_erl_binary(password), _erl_binary(self.domain),
                   ', '.join(_erl_binary(u) for u in users)))
        out = self.eval(expr)
        if out != '[]':
            raise RuntimeError('ejabberd register: %s' % out)

    def register(self, user, password):
        """Create account user@localhost."""
        self.register_many([user], password)


CONFIG_TEMPLATE = '''# generated by tests/integration/ejabberd.py
# A private instance: nothing here is shared with a system ejabberd.
loglevel: %(level)s
log_rotate_count: 0
hide_sensitive_log_data: false
hosts:
  - localhost
default_db: mnesia
auth_method: internal
auth_password_format: plain
# the benchmark logs in 1000 users; the default 1000 entries thrash
cache_size: 10000
# the tests log in over plain TCP, no TLS anywhere; SCRAM-SHA-1 and PLAIN
# as Prosody offers them (libstrophe would pick SCRAM-SHA-512, and with
# plain stored passwords ejabberd derives the key at every login: the
# benchmark's 1000 logins took 10 s instead of 7)
disable_sasl_mechanisms:
  - "digest-md5"
  - "x-oauth2"
  - "scram-sha-256"
  - "scram-sha-512"

listen:
  -
    port: %(c2s)d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    # the default, 5, drops SYNs when the benchmark connects 128 at once
    backlog: 1024
    starttls: false
    max_stanza_size: 262144
    access: c2s
  -
    port: %(comp)d
    ip: "127.0.0.1"
    module: ejabberd_service
    # no shaper_rule: a component's traffic is not throttled
    # each component gets the routes of its own domain only: the default
    # (true) registers every domain below for every connection, so a
    # second component would receive mailpubsubd's stanzas and the reverse
    global_routes: false
    hosts:
%(components)s

acl:
  local:
    user_regexp: ""
  pubsub_creators:
    server:
%(creators)s  loopback:
    ip:
      - 127.0.0.0/8

access_rules:
  local:
    allow: local
  c2s:
    allow: all
  # one rule per line: conditions listed under a single allow must all match
  pubsub_createnode:
    - allow: local
    - allow: pubsub_creators
  multicast:
    allow: all

api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"

modules:
  mod_admin_extra: {}
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_pubsub:
    hosts:
      - %(pubsub)s
    access_createnode: pubsub_createnode
    plugins:
      - "flat"
    db_type: mnesia
    # as Prosody's default: a late last item must not count as a new one
    default_node_config:
      send_last_published_item: never
  mod_multicast:
    host: %(multicast)s
    access: multicast
    limits:
      local:
        message: infinite
        presence: infinite
      remote:
        message: infinite
        presence: infinite
'''
