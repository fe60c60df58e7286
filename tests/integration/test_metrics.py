"""The Prometheus endpoint (issue 18): a scrape passes `promtool check
metrics`, carries the numbers this test produced, and a private Prometheus
(own temp dir, own port, 1 s scrapes, started and stopped here) scraping
the daemon during the test returns them through its HTTP API. The example
configuration and alerting rules pass promtool's checks and unit tests."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from harness import Daemon, free_port, wait_until
from stack import TOP, Stack
from test_status import DELIVERED, produce, store_counts

EXAMPLES = os.path.join(TOP, 'examples', 'prometheus')


@pytest.fixture
def mstack(workdir):
    port = free_port()
    s = Stack(workdir, users=('alice', 'bob'),
              config={'metrics': {'listen': '127.0.0.1:%d' % port}})
    s.metrics_port = port
    s.start()
    try:
        yield s
    finally:
        s.stop()


def scrape(port, path='/metrics'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=10) as r:
        return r.status, r.headers.get('Content-Type'), r.read().decode()


def value(text, name, **labels):
    """The sample of name with exactly these labels in an exposition."""
    want = ','.join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        m = re.match(r'([a-z_:]+)(?:\{(.*)\})? (\S+)$', line)
        if m and m.group(1) == name and \
                ','.join(sorted((m.group(2) or '').split(','))).strip(',') == want:
            return float(m.group(3))
    raise KeyError('%s%r not in the scrape' % (name, labels))


def test_scrape_passes_promtool_and_counts(mstack, workdir):
    produce(mstack)
    head, cyrus, _ = store_counts(mstack)
    status, ctype, text = scrape(mstack.metrics_port)
    assert status == 200 and ctype.startswith('text/plain; version=0.0.4')
    lint = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert value(text, 'mailpubsub_events_journaled_total', source='cyrus') == cyrus
    assert value(text, 'mailpubsub_events_received_total', source='cyrus') == cyrus + 1
    assert value(text, 'mailpubsub_events_malformed_total', source='cyrus',
                 reason='wire_format') == 1
    assert value(text, 'mailpubsub_events_malformed_total', source='json',
                 reason='invalid_json') == 0
    assert value(text, 'mailpubsub_journal_head_sequence') == head
    assert value(text, 'mailpubsub_subscriptions') == 2
    assert value(text, 'mailpubsub_component_connected') == 1
    assert value(text, 'mailpubsub_component_connections_total') == 1
    assert value(text, 'mailpubsub_notifications_sent_total') >= DELIVERED
    assert value(text, 'mailpubsub_authz_decisions_total', outcome='granted') >= 2
    assert value(text, 'mailpubsub_authz_decision_duration_seconds_count') == sum(
        value(text, 'mailpubsub_authz_decisions_total', outcome=o)
        for o in ('granted', 'denied', 'error'))
    published = value(text, 'mailpubsub_events_published_total')
    assert published >= DELIVERED
    assert value(text, 'mailpubsub_event_to_stanza_seconds_count') == published
    assert value(text, 'mailpubsub_event_to_stanza_seconds_bucket', le='+Inf') == published
    assert value(text, 'process_resident_memory_bytes') > 1 << 20
    assert value(text, 'mailpubsub_json_source_connections') == 0
    assert value(text, 'mailpubsub_imap_source_watchers') == 0
    # only /metrics, only GET
    with pytest.raises(urllib.error.HTTPError) as err:
        scrape(mstack.metrics_port, '/other')
    assert err.value.code == 404
    req = urllib.request.Request('http://127.0.0.1:%d/metrics' % mstack.metrics_port,
                                 data=b'x', method='POST')
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 405


def test_example_config_and_rules():
    for args in (['check', 'config', os.path.join(EXAMPLES, 'prometheus.yml')],
                 ['check', 'rules', os.path.join(EXAMPLES, 'mailpubsub-alerts.yml')],
                 ['test', 'rules', os.path.join(TOP, 'tests', 'prometheus', 'alerts_test.yml')]):
        proc = subprocess.run(['promtool'] + args, capture_output=True, text=True,
                              timeout=60, cwd=os.path.join(TOP, 'tests', 'prometheus'))
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert 'SUCCESS' in proc.stdout


class PrivatePrometheus:
    """Prometheus from Debian's package, in its own directory and port."""

    def __init__(self, workdir, target_port):
        self.dir = os.path.join(workdir, 'prometheus')
        os.makedirs(os.path.join(self.dir, 'data'))
        self.port = free_port()
        shutil.copy(os.path.join(EXAMPLES, 'mailpubsub-alerts.yml'), self.dir)
        self.config = os.path.join(self.dir, 'prometheus.yml')
        with open(self.config, 'w') as f:
            f.write('global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
                    'rule_files:\n  - mailpubsub-alerts.yml\n'
                    'scrape_configs:\n  - job_name: mailpubsub\n'
                    '    static_configs:\n      - targets: [\'127.0.0.1:%d\']\n' % target_port)
        self.daemon = Daemon(self.dir, ['prometheus', '--config.file=' + self.config,
                                        '--storage.tsdb.path=' + os.path.join(self.dir, 'data'),
                                        '--web.listen-address=127.0.0.1:%d' % self.port,
                                        '--log.level=warn'], name='prometheus')

    def start(self):
        self.daemon.start()
        wait_until(lambda: self._ready(), 30, 0.2, what='prometheus ready')
        return self

    def _ready(self):
        assert self.daemon.running(), self.daemon.log()
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/-/ready' % self.port,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        url = 'http://127.0.0.1:%d/api/v1/%s?%s' % (self.port, path,
                                                    urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=10) as r:
            reply = json.load(r)
        assert reply['status'] == 'success', reply
        return reply['data']

    def query(self, expr):
        """The single value of an instant query, or None."""
        result = self.api('query', query=expr)['result']
        return float(result[0]['value'][1]) if len(result) == 1 else None

    def stop(self):
        self.daemon.stop()


def example_rule_count():
    """The alerting and recording rules examples/prometheus ships."""
    with open(os.path.join(EXAMPLES, 'mailpubsub-alerts.yml')) as f:
        return len(re.findall(r'(?m)^\s*- (?:alert|record):', f.read()))


def test_private_prometheus_sees_the_counts(mstack, workdir):
    prom = PrivatePrometheus(workdir, mstack.metrics_port).start()
    try:
        wait_until(lambda: prom.query('up{job="mailpubsub"}') == 1, 20,
                   what='first scrape of mailpubsubd')
        produce(mstack)
        head, cyrus, _ = store_counts(mstack)
        expected = {
            'mailpubsub_events_journaled_total{source="cyrus"}': cyrus,
            'mailpubsub_events_malformed_total{source="cyrus",reason="wire_format"}': 1,
            'mailpubsub_journal_head_sequence': head,
            'mailpubsub_subscriptions': 2,
            'mailpubsub_component_connected': 1,
            'mailpubsub_backlog_events{consumer="publisher"}': 0,
        }

        def all_seen():
            got = {e: prom.query(e) for e in expected}
            return got if got == expected else None
        try:
            wait_until(all_seen, 20, 0.5, what='Prometheus to scrape the counts')
        except TimeoutError:
            pytest.fail('Prometheus has %r, expected %r'
                        % ({e: prom.query(e) for e in expected}, expected))
        assert prom.query('mailpubsub_notifications_sent_total') >= DELIVERED
        assert prom.query('sum(mailpubsub_authz_decisions_total{outcome="granted"})') >= 2
        # the example rules load and evaluate against the real series
        groups = prom.api('rules')['groups']
        rules = [r for g in groups for r in g['rules']]
        assert len(rules) == example_rule_count() and \
            all(r['health'] == 'ok' for r in rules), rules
        # a recording rule has a value once it was evaluated over two scrapes
        wait_until(lambda: prom.query('mailpubsub:events_journaled:rate1m{source="cyrus"}')
                   is not None, 20, 0.5, what='the recording rule evaluated')
        firing = [a['labels']['alertname'] for a in prom.api('alerts')['alerts']]
        assert 'MailpubsubComponentDisconnected' not in firing
    finally:
        prom.stop()


def test_port_in_use_stops_the_start(workdir):
    """A [metrics] listen that cannot be had is a configuration error the
    daemon says at once, not a silent missing endpoint."""
    import socket
    from stack import daemon_binary
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    s = Stack(workdir, users=('alice',),
              config={'metrics': {'listen': '127.0.0.1:%d' % busy.getsockname()[1]}})
    try:
        s.start(start_daemon=False)
        d = Daemon(workdir, [daemon_binary(), '-f', '-c', s.conf]).start()
        assert d.wait(15) == 1
        assert 'cannot start: [metrics] listen: cannot listen' in d.log(), d.log()
        assert 'metrics: cannot listen on 127.0.0.1:%d' % busy.getsockname()[1] in d.log()
    finally:
        busy.close()
        s.stop()


def test_stalled_scrapers_do_not_stall_the_daemon(mstack):
    """MHD runs on the daemon's loop: scrapers that connect and send half a
    request (more of them than the endpoint admits) must not hold up
    events or later scrapes."""
    import socket
    stalled = []
    try:
        for _ in range(20):
            c = socket.create_connection(('127.0.0.1', mstack.metrics_port), timeout=5)
            c.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n')   # never finished
            stalled.append(c)
        started = time.monotonic()
        produce(mstack)    # subscriptions, deliveries, their notifications
        assert time.monotonic() - started < 30
    finally:
        for c in stalled:
            c.close()
    _, cyrus, _ = store_counts(mstack)
    text = wait_until(lambda: (lambda t: t if value(t, 'mailpubsub_events_journaled_total',
                                                    source='cyrus') == cyrus else None)(
        scrape(mstack.metrics_port)[2]), 15, what='a scrape after the stalled ones')
    assert value(text, 'mailpubsub_subscriptions') == 2
