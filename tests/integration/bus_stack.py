"""Several mail backends, one service: two private Cyrus instances, each
with an ingesting mailpubsubd publishing to one private RabbitMQ, and a
front mailpubsubd consuming that queue ([bus] consume) behind Prosody,
asking each account's ACLs of the Cyrus that holds it ([backends]).

Every process lives in one temp dir and is stopped by PID.

    Cyrus b1 --notify--> mailpubsubd b1 --+
                                          +--> RabbitMQ /queue/Q --> front mailpubsubd --> Prosody
    Cyrus b2 --notify--> mailpubsubd b2 --+       ^ MYRIGHTS: b1 for b1's accounts, b2 for b2's

The backend instances keep a component of their own (b1.events.localhost,
b2.events.localhost): the daemon needs one today (README "Message bus").
"""
import os
import sqlite3

from harness import Cyrus, Daemon, Prosody, wait_until
from rabbitmq import RabbitMQ, USER as BUS_USER, wait_ready
from stack import COMPONENT, PASSWORD, Clients, assert_sanitizer_clean, daemon_binary

QUEUE = '/queue/mailpubsub-front'


class Backend:
    """One Cyrus and the mailpubsubd that ingests its events."""

    def __init__(self, top, name, users):
        self.name = name
        self.dir = os.path.join(top, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.users = users
        self.notify_socket = os.path.join(self.dir, 'notify.sock')
        self.cyrus = Cyrus(self.dir, self.notify_socket)
        self.conf = os.path.join(self.dir, 'mailpubsub.conf')
        self.db = os.path.join(self.dir, 'mailpubsub.db')
        self.domain = '%s.%s' % (name, COMPONENT)
        self.daemon = None

    @property
    def imap_port(self):
        return self.cyrus.choose_ports()[0]

    def journal_count(self):
        return _count(self.db, 'SELECT count(*) FROM journal')


def _count(path, sql, args=()):
    db = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchone()[0]
    finally:
        db.close()


def _section(name, values):
    return '\n[%s]\n' % name + ''.join('%s = %s\n' % kv for kv in values.items())


class BusStack(Clients):
    def __init__(self, workdir, b1_users=('alice', 'carol'), b2_users=('bob', 'dave'),
                 xmpp_users=('alice', 'bob', 'carol', 'dave'), front_extra=None,
                 wrapper=None, front_address='/queue/front-all'):
        self.workdir = workdir
        self.wrapper = list(wrapper or [])
        self.backends = [Backend(workdir, 'b1', b1_users),
                         Backend(workdir, 'b2', b2_users)]
        components = ''.join('Component "%s"\n    component_secret = "s3cret"\n'
                             % b.domain for b in self.backends)
        self.prosody = Prosody(workdir, component_domain=COMPONENT,
                               extra_config=components)
        self.broker = RabbitMQ(workdir)
        self.xmpp_users = xmpp_users
        self.front_conf = os.path.join(workdir, 'front.conf')
        self.front_db = os.path.join(workdir, 'front.db')
        self.front_extra = front_extra or {}
        self.front_address = front_address   # None: the front only consumes
        self.bus_credentials = os.path.join(workdir, 'bus-credentials')
        self.front = None
        self.clients = []

    # ---- configuration
    def _common(self, domain, db, imap_port):
        return (_section('component', {
                    'host': '127.0.0.1', 'port': self.prosody.component_port,
                    'domain': domain, 'secret': self.prosody.secret,
                    'ping_interval': 5, 'ping_timeout': 5}) +
                _section('store', {'path': db, 'full_sync': 'no',
                                   'items_per_node': 5}) +
                _section('imap', {'host': '127.0.0.1', 'port': imap_port,
                                  'tls': 'none', 'admin_user': 'admin',
                                  'password': 'pw', 'timeout_ms': 2000,
                                  'acl_cache_ttl': 60, 'list_as_owner': 'no'}) +
                _section('accounts', {'jid_domains': 'localhost'}) +
                _section('log', {'level': 'debug'}))

    def bus_connection(self):
        """[bus] keys of the broker connection (shared by both sides)."""
        return {'urls': self.broker.url, 'credentials_file': self.bus_credentials}

    def write_backend_config(self, b):
        bus = self.bus_connection()
        bus.update({'address': QUEUE, 'instance': b.name, 'content': 'none'})
        text = self._common(b.domain, b.db, b.imap_port)
        text += _section('cyrus', {'notify_socket': b.notify_socket,
                                   'socket_mode': '0666', 'socket_group': '',
                                   'hierarchy_separator': '/'})
        text += _section('bus', bus)
        with open(b.conf, 'w') as f:
            f.write(text)

    def write_front_config(self):
        b1, b2 = self.backends
        bus = self.bus_connection()
        bus.update({'consume': QUEUE, 'instance': 'front'})
        if self.front_address is not None:
            # the front publishes what it journals too, to another queue
            bus['address'] = self.front_address
        text = self._common(COMPONENT, self.front_db, b1.imap_port)
        text += _section('cyrus', {'hierarchy_separator': '/'})
        text += _section('bus', bus)
        text += _section('backends', dict(
            [(u, '127.0.0.1:%d' % b1.imap_port) for u in b1.users] +
            [(u, '127.0.0.1:%d' % b2.imap_port) for u in b2.users]))
        for section, values in self.front_extra.items():
            text += _section(section, values)
        with open(self.front_conf, 'w') as f:
            f.write(text)

    # ---- processes
    def start(self):
        self.broker.start()
        wait_ready(self.broker)
        with open(self.bus_credentials, 'w') as f:
            f.write('%s\n%s\n' % (BUS_USER, self.broker.password))
        os.chmod(self.bus_credentials, 0o600)
        self.prosody.start()
        for u in self.xmpp_users:
            self.prosody.register(u, PASSWORD)
        for b in self.backends:
            self.write_backend_config(b)
            b.daemon = self._daemon(b.conf, b.name)
            wait_until(lambda: os.path.exists(b.notify_socket), 10,
                       what='%s notify socket' % b.name)
            b.cyrus.start()
            for u in b.users:
                b.cyrus.create_user(u)
        self.write_front_config()
        self.start_front()
        return self

    def _daemon(self, conf, name):
        d = Daemon(self.workdir, self.wrapper + [daemon_binary(), '-f', '-c', conf],
                   name='mailpubsubd-' + name)
        d.start()
        d.wait_log(r'component connected', timeout=60 if self.wrapper else 20)
        return d

    def start_front(self):
        self.front = self._daemon(self.front_conf, 'front')
        return self.front

    def front_journal(self, sql='SELECT count(*) FROM journal', args=()):
        return _count(self.front_db, sql, args)

    def stop(self):
        self.disconnect_clients()
        daemons = [d for d in [self.front] + [b.daemon for b in self.backends]
                   if d is not None]
        try:
            for d in daemons:
                d.stop()
            for d in daemons:
                assert_sanitizer_clean(d.log(), d.name)
        finally:
            for b in self.backends:
                try:
                    b.cyrus.stop()
                except Exception:
                    pass
            try:
                self.prosody.stop()
            finally:
                self.broker.stop()
