"""pytest fixtures for the mailpubsub integration tests.

Run with Debian's interpreter, as root:
    cd tests/integration && /usr/bin/python3 -m pytest -x -q

Every fixture is function-scoped: each test gets its own work directory,
Cyrus and Prosody (each starts in well under a second), and the servers are
always stopped at teardown, also when the test fails.  The work directory is
removed unless the test failed (then its path is printed for inspection);
set MAILPUBSUB_KEEP_WORKDIR=1 to always keep it.
"""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, 'rep_' + rep.when, rep)


def _failed(request):
    return any(getattr(getattr(request.node, 'rep_' + w, None), 'failed', False)
               for w in ('setup', 'call'))


@pytest.fixture
def workdir(request):
    path = tempfile.mkdtemp(prefix='mailpubsub-it-', dir='/tmp')
    os.chmod(path, 0o755)   # user cyrus must traverse it
    yield path
    if _failed(request) or os.environ.get('MAILPUBSUB_KEEP_WORKDIR'):
        sys.stderr.write('\nkept work directory: %s\n' % path)
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify_path(workdir):
    """Path of the Cyrus notify socket (nothing bound yet)."""
    return os.path.join(workdir, 'notify.sock')


@pytest.fixture
def notify(notify_path):
    """A NotifyListener bound at notify_path, read by a background thread."""
    listener = harness.NotifyListener(notify_path)
    yield listener
    listener.close()


def _cyrus(workdir, notify_path, **kw):
    c = harness.Cyrus(workdir, notify_path, **kw)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def cyrus(workdir, notify_path):
    """Cyrus with unixhierarchysep: yes (user/alice/Sub).  Events go to
    notify_path: bind something there (the `notify` fixture or the daemon)."""
    yield from _cyrus(workdir, notify_path)


@pytest.fixture
def cyrus_dot(workdir, notify_path):
    """Cyrus with unixhierarchysep: no (user.alice.Sub)."""
    yield from _cyrus(workdir, notify_path, unixhierarchysep=False)


@pytest.fixture
def prosody(workdir):
    p = harness.Prosody(workdir)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture
def xmpp_clients():
    """Factory for connected XmppClients, all disconnected at teardown:
    client = xmpp_clients(jid, password, port)."""
    clients = []

    def make(jid, password, port, host='127.0.0.1', **kw):
        c = harness.XmppClient()
        clients.append(c)
        return c.connect(jid, password, host, port, **kw)
    yield make
    for c in clients:
        c.disconnect()


@pytest.fixture
def daemons():
    """Factory for harness.Daemon objects, all stopped at teardown:
    d = daemons(workdir, argv)."""
    started = []

    def make(workdir, argv, **kw):
        d = harness.Daemon(workdir, argv, **kw)
        started.append(d)
        return d.start()
    yield make
    for d in started:
        d.stop()


@pytest.fixture
def stack(workdir):
    """Private Prosody + Cyrus + mailpubsubd with users alice and bob; a
    test module needing other users or settings defines its own."""
    from stack import Stack
    s = Stack(workdir)
    try:
        s.start()
        yield s
    finally:
        s.stop()
