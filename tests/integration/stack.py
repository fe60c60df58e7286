"""A private Cyrus + Prosody + mailpubsubd on loopback, for integration tests.

Everything lives in one temp dir; servers are stopped by recorded PID.
"""
import os
import subprocess
import xml.etree.ElementTree as ET

from harness import Cyrus, Daemon, Prosody, XmppClient, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SCHEMA = os.path.join(TOP, 'pubsub-schemas', 'mailbox-event.rng')

NS_CLIENT = 'jabber:client'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event'
NS_PUBSUB_ERRORS = 'http://jabber.org/protocol/pubsub#errors'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_ITEM = 'urn:mailpubsub:event:0'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_DELAY = 'urn:xmpp:delay'
COMPONENT = 'events.localhost'
PASSWORD = 'secret-pw'


def daemon_binary():
    path = os.environ.get('MAILPUBSUBD', os.path.join(TOP, 'build', 'mailpubsubd'))
    if not os.access(path, os.X_OK):
        raise RuntimeError('mailpubsubd not built at %s (run make first)' % path)
    return path


# The IMAP set-ups the README documents for Cyrus, by what mailpubsubd's
# admin_user is there: in Cyrus's `admins` (and LISTing every account in its
# own session), or only in `proxyservers` (LISTing each account as its owner).
CYRUS_SETUPS = ('admins', 'proxyservers')


def assert_sanitizer_clean(log, name='mailpubsubd'):
    """Under --enable-sanitizers a report fails the test that caused it."""
    for marker in ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                   'runtime error:'):
        assert marker not in log, 'sanitizer report in %s log' % name


class Clients:
    """For a stack with self.prosody and self.clients: the c2s clients it
    hands out, all disconnected when it stops."""

    def client(self, user):
        c = XmppClient()
        c.connect('%s@localhost' % user, PASSWORD, port=self.prosody.c2s_port)
        self.clients.append(c)
        return c

    def disconnect_clients(self):
        for c in self.clients:
            try:
                c.disconnect()
            except Exception:
                pass
        self.clients = []


class Stack(Clients):
    def __init__(self, workdir, users=('alice', 'bob'), unixhierarchysep=True,
                 config=None, wrapper=None, xmpp_server=None,
                 cyrus_setup='admins'):
        assert cyrus_setup in CYRUS_SETUPS
        self.workdir = workdir
        self.cyrus_setup = cyrus_setup
        self.wrapper = list(wrapper or [])   # e.g. valgrind and its options
        self.extra_config = config or {}
        self.users = users
        self.notify_socket = os.path.join(workdir, 'notify.sock')
        self.cyrus = Cyrus(workdir, self.notify_socket,
                           unixhierarchysep=unixhierarchysep)
        self.mail_server = self.cyrus   # what stop() stops besides Prosody
        # the XMPP server (named after the first one; test_dovecot's stack
        # sets it too): Prosody, or any server with the same start, stop,
        # register, c2s_port, component_port and secret, made for COMPONENT
        # in this workdir (ejabberd.Ejabberd)
        self.prosody = xmpp_server or Prosody(workdir, component_domain=COMPONENT)
        self.conf = os.path.join(workdir, 'mailpubsub.conf')
        self.db = os.path.join(workdir, 'mailpubsub.db')
        self.daemon = None
        self.clients = []

    @property
    def xmpp(self):
        return self.prosody

    @property
    def imap_user(self):
        """mailpubsubd's [imap] admin_user: Cyrus's admin, or its proxy
        server user (harness.Cyrus puts `proxy` in proxyservers)."""
        return self.cyrus.admin if self.cyrus_setup == 'admins' else 'proxy'

    def write_config(self, **extra):
        sep = self.cyrus.sep
        text = f"""[component]
host = 127.0.0.1
port = {self.prosody.component_port}
domain = {COMPONENT}
secret = {self.prosody.secret}
ping_interval = 5
ping_timeout = 5

[cyrus]
notify_socket = {self.notify_socket}
socket_mode = 0666
socket_group =
hierarchy_separator = {sep}

[store]
path = {self.db}
full_sync = no
items_per_node = 5

[imap]
host = 127.0.0.1
port = {self.cyrus.choose_ports()[0]}
tls = none
admin_user = {self.imap_user}
password = {self.cyrus.password}
timeout_ms = 2000
acl_cache_ttl = 60
{'list_as_owner = no' if self.cyrus_setup == 'admins' else ''}

[accounts]
jid_domains = localhost

[log]
level = debug
"""
        merged = dict(self.extra_config)
        merged.update(extra)
        for section, values in merged.items():
            text += '\n[%s]\n' % section
            for k, v in values.items():
                text += '%s = %s\n' % (k, v)
        with open(self.conf, 'w') as f:
            f.write(text)

    def start(self, start_daemon=True):
        self.prosody.start()
        for u in self.users:
            self.prosody.register(u, PASSWORD)
        self.write_config()
        if start_daemon:
            self.start_daemon()
        self.cyrus.start()
        for u in self.users:
            self.cyrus.create_user(u)
        return self

    def start_daemon(self):
        self.daemon = Daemon(self.workdir,
                             self.wrapper + [daemon_binary(), '-f', '-c', self.conf])
        self.daemon.start()
        self.daemon.wait_log(r'component connected', timeout=60 if self.wrapper else 15)
        wait_until(lambda: os.path.exists(self.notify_socket), 5,
                   what='notify socket')
        return self.daemon

    def stop_daemon(self):
        if self.daemon is None:
            return None
        status = self.daemon.stop()
        log = self.daemon.log()
        self.daemon = None
        assert_sanitizer_clean(log)
        return status

    def stop(self):
        self.disconnect_clients()
        try:
            self.stop_daemon()
        finally:
            try:
                self.mail_server.stop()
            finally:
                self.prosody.stop()


# ---- stanza helpers -------------------------------------------------------

def service_jid(account):
    return '%s@%s' % (account, COMPONENT)


def options_form(fields, ftype='submit'):
    """An XEP-0004 subscribe_options form; fields: var -> value or list."""
    out = [f"<x xmlns='jabber:x:data' type='{ftype}'>",
           "<field var='FORM_TYPE' type='hidden'><value>"
           "http://jabber.org/protocol/pubsub#subscribe_options</value></field>"]
    for var, value in fields.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        out.append(f"<field var='{var}'>" +
                   ''.join(f'<value>{v}</value>' for v in values) + '</field>')
    out.append('</x>')
    return ''.join(out)


def subscribe_iq(to, node, jid, options=None):
    opts = f'<options>{options_form(options)}</options>' if options else ''
    return (f"<iq type='set' to='{to}'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<subscribe node='{node}' jid='{jid}'/>{opts}</pubsub></iq>")


def options_iq(to, node, jid, options=None):
    if options is None:
        return (f"<iq type='get' to='{to}'><pubsub xmlns='{NS_PUBSUB}'>"
                f"<options node='{node}' jid='{jid}'/></pubsub></iq>")
    return (f"<iq type='set' to='{to}'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<options node='{node}' jid='{jid}'>{options_form(options)}</options>"
            f"</pubsub></iq>")


def unsubscribe_iq(to, node, jid, subid=None):
    sub = f" subid='{subid}'" if subid else ''
    return (f"<iq type='set' to='{to}'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<unsubscribe node='{node}' jid='{jid}'{sub}/></pubsub></iq>")


def items_iq(to, node, max_items=None):
    mx = f" max_items='{max_items}'" if max_items else ''
    return (f"<iq type='get' to='{to}'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<items node='{node}'{mx}/></pubsub></iq>")


def disco_iq(to, ns, node=None):
    n = f" node='{node}'" if node else ''
    return f"<iq type='get' to='{to}'><query xmlns='{ns}'{n}/></iq>"


def iq_type(reply):
    return reply.get('type')


def error_of(reply):
    """(type, stanza condition, pubsub condition or None, feature or None)."""
    err = reply.find('{%s}error' % NS_CLIENT)
    assert err is not None, ET.tostring(reply, 'unicode')
    cond = pcond = feature = None
    for child in err:
        ns, _, name = child.tag[1:].partition('}')
        if ns == NS_STANZAS and name != 'text':
            cond = name
        elif ns == NS_PUBSUB_ERRORS:
            pcond = name
            feature = child.get('feature')
    return err.get('type'), cond, pcond, feature


def event_items(msg):
    """(node, [(item id, payload element)]) of a pubsub notification, or None."""
    ev = msg.find('{%s}event' % NS_PUBSUB_EVENT)
    if ev is None:
        return None
    items = ev.find('{%s}items' % NS_PUBSUB_EVENT)
    if items is None:
        return None
    out = []
    for it in items.findall('{%s}item' % NS_PUBSUB_EVENT):
        out.append((it.get('id'), it.find('{%s}mailbox-event' % NS_ITEM)))
    return items.get('node'), out


def is_event(msg, etype=None, node=None):
    got = event_items(msg)
    if got is None:
        return False
    n, items = got
    if node is not None and n != node:
        return False
    return any(p is not None and (etype is None or p.get('type') == etype)
               for _, p in items)


def wait_event(client, etype, node=None, timeout=10.0):
    """The payload of the next notification of type etype (on node)."""
    msg = client.wait_message(lambda m: is_event(m, etype, node), timeout)
    _, items = event_items(msg)
    for _, payload in items:
        if payload.get('type') == etype:
            validate_payload(payload)
            return msg, payload
    raise AssertionError('unreachable')


def validate_payload(payload):
    """Checks an item payload against pubsub-schemas/ with xmllint."""
    xml = ET.tostring(payload, 'unicode')
    proc = subprocess.run(['xmllint', '--noout', '--relaxng', SCHEMA, '-'],
                          input=xml, capture_output=True, text=True)
    assert proc.returncode == 0, 'schema: %s\n%s' % (proc.stderr, xml)


def child_text(payload, name):
    el = payload.find('{%s}%s' % (NS_ITEM, name))
    return el.text if el is not None else None


def mailbox_of(payload, name='mailbox'):
    return payload.find('{%s}%s' % (NS_ITEM, name))
