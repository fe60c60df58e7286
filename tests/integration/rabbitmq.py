"""A private RabbitMQ 3.10 node with AMQP 1.0, for the message bus tests.

Started from examples/rabbitmq/ (its rabbitmq.conf and enabled_plugins,
with our own listener port and password) in a temp dir, as its own Erlang
node: own HOME (so its own .erlang.cookie), own epmd port on loopback, own
distribution port. Never the system instance. Stopped by PID, its epmd too
(found by the port in its environment).
"""
import os
import re
import signal
import subprocess
import time

from harness import free_port, kill_and_wait, pid_alive, port_open, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(TOP, 'examples', 'rabbitmq')
SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'
CTL = '/usr/lib/rabbitmq/bin/rabbitmqctl'

USER = 'mailpubsub'


def make_tls(directory, name='localhost'):
    """A CA and a server certificate for DNS name, signed by it (openssl);
    returns (ca, cert, key) paths."""
    ca_key, ca = os.path.join(directory, 'ca.key'), os.path.join(directory, 'ca.pem')
    key, csr = os.path.join(directory, 'server.key'), os.path.join(directory, 'server.csr')
    cert, ext = os.path.join(directory, 'server.pem'), os.path.join(directory, 'san.ext')

    def run(*args):
        subprocess.run(['openssl'] + list(args), check=True, capture_output=True)
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', ca_key, '-out', ca,
        '-days', '2', '-subj', '/CN=mailpubsub test CA')
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr,
        '-subj', '/CN=%s' % name)
    with open(ext, 'w') as f:
        f.write('subjectAltName = DNS:%s\n' % name)
    run('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', ca_key, '-CAcreateserial',
        '-out', cert, '-days', '2', '-extfile', ext)
    return ca, cert, key


class RabbitMQ:
    def __init__(self, workdir, password='bus-secret-pw', name='bus', tls=False):
        self.dir = os.path.join(workdir, 'rabbitmq-' + name)
        self.home = os.path.join(self.dir, 'home')
        self.password = password
        self.port = free_port()
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.nodename = 'mpsbus%d@localhost' % self.port
        self.proc = None
        self.log = None
        for d in (self.dir, self.home):
            os.makedirs(d, exist_ok=True)
        self.tls_port = free_port() if tls else None
        self.tls = make_tls(self.dir) if tls else None
        self._write_config()

    @property
    def url(self):
        return 'amqp://127.0.0.1:%d' % self.port

    def _write_config(self):
        with open(os.path.join(EXAMPLE, 'rabbitmq.conf')) as f:
            conf = f.read()
        conf = re.sub(r'(?m)^listeners\.tcp\.default = .*$',
                      'listeners.tcp.default = 127.0.0.1:%d' % self.port, conf)
        conf = re.sub(r'(?m)^default_pass = .*$',
                      'default_pass = %s' % self.password, conf)
        conf = re.sub(r'(?m)^disk_free_limit\.absolute = .*$',
                      'disk_free_limit.absolute = 10MB', conf)
        conf += ('\ndistribution.listener.port_range.min = %d\n'
                 'distribution.listener.port_range.max = %d\n'
                 'distribution.listener.interface = 127.0.0.1\n'
                 % (self.dist_port, self.dist_port))
        if self.tls is not None:
            conf += ('listeners.ssl.default = 127.0.0.1:%d\n'
                     'ssl_options.cacertfile = %s\nssl_options.certfile = %s\n'
                     'ssl_options.keyfile = %s\nssl_options.verify = verify_none\n'
                     'ssl_options.fail_if_no_peer_cert = false\n'
                     % ((self.tls_port,) + self.tls))
        with open(os.path.join(self.dir, 'rabbitmq.conf'), 'w') as f:
            f.write(conf)
        with open(os.path.join(EXAMPLE, 'enabled_plugins')) as src, \
                open(os.path.join(self.dir, 'enabled_plugins'), 'w') as dst:
            dst.write(src.read())

    def env(self):
        env = dict(os.environ)
        env.update({
            'HOME': self.home,
            'RABBITMQ_NODENAME': self.nodename,
            'RABBITMQ_CONFIG_FILE': os.path.join(self.dir, 'rabbitmq.conf'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(self.dir, 'enabled_plugins'),
            'RABBITMQ_MNESIA_BASE': os.path.join(self.dir, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(self.dir, 'log'),
            'RABBITMQ_PID_FILE': os.path.join(self.dir, 'rabbit.pid'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(self.dir, 'advanced.config'),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(self.dir, 'rabbitmq-env.conf'),
            'ERL_EPMD_PORT': str(self.epmd_port),
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'LC_ALL': 'C.UTF-8',
        })
        return env

    def start(self, timeout=60.0):
        self.log = open(os.path.join(self.dir, 'server.out'), 'ab')
        self.proc = subprocess.Popen([SERVER], env=self.env(), cwd=self.dir,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_until(lambda: port_open(self.port) or self.proc.poll() is not None,
                   timeout=timeout, interval=0.2, what='RabbitMQ on %d' % self.port)
        if self.proc.poll() is not None:
            raise RuntimeError('RabbitMQ exited (%s); see %s/server.out'
                               % (self.proc.returncode, self.dir))
        return self

    def beam_pids(self):
        """The Erlang VM of our node (a child of the start script)."""
        return _pids_with_env(b'beam', 'RABBITMQ_NODENAME=%s' % self.nodename)

    def epmd_pids(self):
        return _pids_with_env(b'epmd', 'ERL_EPMD_PORT=%d' % self.epmd_port)

    def kill9(self):
        """The broker dies at once (kill -9 of its VM), as in a crash."""
        pids = self.beam_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10,
                   what='RabbitMQ VM gone')
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None
        wait_until(lambda: not port_open(self.port), timeout=10, what='port closed')

    def stop(self, timeout=30.0):
        if self.proc is not None:
            pids = [self.proc.pid] + self.beam_pids()
            kill_and_wait(pids, timeout=timeout)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        kill_and_wait(self.beam_pids(), timeout=5)
        kill_and_wait(self.epmd_pids(), timeout=5)
        if self.log is not None:
            self.log.close()
            self.log = None

    def ctl(self, *args, check=True):
        return subprocess.run([CTL, '-n', self.nodename] + list(args), env=self.env(),
                              cwd=self.dir, capture_output=True, text=True,
                              timeout=60, check=check)

    def queues(self):
        """{queue name: messages ready and unacknowledged} of every queue
        the broker has."""
        out = self.ctl('list_queues', '-q', '--no-table-headers', 'name', 'messages').stdout
        return {parts[0]: int(parts[1]) for parts in map(str.split, out.splitlines())
                if len(parts) == 2}

    def queue_length(self, queue):
        return self.queues().get(queue)


def _pids_with_env(program, assignment):
    """Live processes whose executable name contains program and whose
    environment holds assignment: ours, whatever their command line says."""
    needle = assignment.encode()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                exe = os.path.basename(f.read().split(b'\0')[0])
            if program not in exe:
                continue
            with open('/proc/%s/environ' % entry, 'rb') as f:
                environ = f.read().split(b'\0')
        except OSError:
            continue
        if needle in environ and pid_alive(int(entry)):
            found.append(int(entry))
    return found


class Consumer:
    """A python3-qpid-proton receiver on the broker: collects every message
    of source (settled accepted at once) in a thread of its own."""

    def __init__(self, url, source, user=USER, password=None, durable=True):
        import threading
        from proton.handlers import MessagingHandler
        from proton.reactor import Container

        self.messages = []
        self.lock = threading.Lock()
        self.error = None
        outer = self

        class Handler(MessagingHandler):
            def __init__(self):
                super().__init__(prefetch=1000)
                self.conn = None

            def on_start(self, event):
                self.conn = event.container.connect(
                    url, user=user, password=password, allow_insecure_mechs=True,
                    allowed_mechs='PLAIN')
                from proton import Terminus
                receiver = event.container.create_receiver(self.conn, source)
                if durable:
                    receiver.source.durability = Terminus.CONFIGURATION
                outer.receiver = receiver

            def on_message(self, event):
                m = event.message
                with outer.lock:
                    outer.messages.append(m)

            def on_transport_error(self, event):
                outer.error = str(event.transport.condition)

        self.container = Container(Handler())
        self.thread = threading.Thread(target=self.container.run, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.messages)

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_count(self, n, timeout=30.0):
        return wait_until(lambda: self.count() >= n, timeout=timeout,
                          what='%d bus messages (have %d)' % (n, self.count()))

    def close(self):
        self.container.stop()
        self.thread.join(timeout=10)


def started(workdir, **options):
    """A started broker for a pytest fixture (yield from it): stopped after
    the test whatever happened."""
    b = RabbitMQ(workdir, **options)
    try:
        b.start()
        wait_ready(b)
        yield b
    finally:
        b.stop()


def wait_ready(broker, timeout=60.0):
    """Until an AMQP 1.0 connection works (the port opens a little before
    the plugin is up)."""
    from proton.utils import BlockingConnection

    def ok():
        try:
            c = BlockingConnection(broker.url, user=USER, password=broker.password,
                                   allowed_mechs='PLAIN', allow_insecure_mechs=True,
                                   timeout=5)
            c.close()
            return True
        except Exception:
            time.sleep(0.3)
            return False
    wait_until(ok, timeout=timeout, interval=0.2, what='AMQP 1.0 on the broker')
    # The README's set-up step: the policy of examples/rabbitmq/definitions.json
    # (queues named mailpubsub*: lazy, classic queue version 2). Idempotent,
    # so a restarted broker gets it again harmlessly.
    broker.ctl('import_definitions', os.path.join(EXAMPLE, 'definitions.json'))
