"""src/amqp/ against a private RabbitMQ 3.10 (tests/amqp_probe.c drives it):
failover between broker URLs, the sender's outcomes, the receiver with
deliveries settled after the callback, released ones redelivered, a broker
error (missing exchange) reported, SASL PLAIN refused with a wrong
password."""
import os
import subprocess

import pytest

import rabbitmq

from harness import free_port, wait_until
from rabbitmq import USER

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.environ.get('AMQP_PROBE',
                       os.path.join(HERE, '..', '..', 'build', 'tests', 'amqp_probe'))


@pytest.fixture
def broker(workdir):
    yield from rabbitmq.started(workdir)


def probe(broker, mode, address, count, urls, password=None, timeout=60, wrap=(),
          **env):
    e = dict(os.environ, AMQP_PROBE_USER=USER,
             AMQP_PROBE_PASSWORD=password or broker.password)
    e.update({k: str(v) for k, v in env.items()})
    p = subprocess.run(list(wrap) + [PROBE, mode, address, str(count)] + urls, env=e,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout.splitlines(), p.stderr


def text(output):
    if isinstance(output, bytes):
        return output.decode()
    return output or ''


def test_failover_send_then_receive(broker):
    """The first URL has no broker: the connection fails over to the second
    and every message is accepted; a receiver gets them all, released ones
    again."""
    dead = 'amqp://127.0.0.1:%d' % free_port()
    rc, out, err = probe(broker, 'send', '/queue/probe', 500, [dead, broker.url])
    assert rc == 0, err
    assert out[0].startswith('down amqp://127.0.0.1:') and 'refused' in out[0]
    assert 'up' in out
    accepted = sorted(int(line.split()[1]) for line in out if line.startswith('accepted'))
    assert accepted == list(range(500))
    assert broker.queue_length('probe') == 500

    rc, out, err = probe(broker, 'receive', '/queue/probe', 500, [broker.url],
                         AMQP_PROBE_RELEASE=5)
    assert rc == 0, err
    released = [line.split()[1] for line in out if line.startswith('released')]
    got = [line.split() for line in out if line.startswith('message')]
    assert len(released) == 5
    assert sorted(int(m[2]) for m in got) == list(range(500))
    for _, mid, n, body, redelivered in got:
        assert mid == 'probe:%s' % n and body == n
        if mid in released:
            assert redelivered == '1'
    wait_until(lambda: broker.queue_length('probe') == 0, timeout=10,
               what='every delivery acknowledged')


def test_every_address_of_the_host_is_tried(broker, workdir):
    """A broker name with an IPv6 and an IPv4 address, as "localhost" is in
    Debian's container images (::1 first): the broker listens on
    127.0.0.1 only, and the connection gets there after ::1 refuses. The
    probe alone sees that /etc/hosts, in a mount namespace of its own."""
    hosts = os.path.join(workdir, 'hosts')
    with open(hosts, 'w') as f:
        f.write('::1\tmps-broker\n127.0.0.1\tmps-broker\n')
    port = broker.url.rsplit(':', 1)[1]
    wrap = ('unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$@"', hosts)
    rc, out, err = probe(broker, 'send', '/queue/addrs', 20, ['amqp://mps-broker:%s' % port],
                         wrap=wrap)
    assert rc == 0, (out, err)
    assert 'up' in out
    assert len([line for line in out if line.startswith('accepted')]) == 20


def test_broker_errors_are_reported(broker):
    """A missing exchange closes the session (amqp:not-found); a wrong
    password fails SASL (amqp:unauthorized-access): both come out as the
    reason the connection went down, and the probe keeps retrying."""
    with pytest.raises(subprocess.TimeoutExpired) as e:
        probe(broker, 'send', '/exchange/missing/key', 1, [broker.url], timeout=5)
    out = text(e.value.stdout)
    assert 'amqp:not-found' in out
    with pytest.raises(subprocess.TimeoutExpired) as e:
        probe(broker, 'send', '/queue/probe', 1, [broker.url], password='wrong', timeout=15)
    out = text(e.value.stdout)
    assert 'amqp:unauthorized-access' in out and 'up\n' not in out


def test_amqps_verifies_the_certificate(workdir):
    """amqps://: the broker's certificate chain is checked against ca_file
    and its name against the URL's host; a chain we do not trust, or a
    name it was not issued for, never gets as far as SASL."""
    gen = rabbitmq.started(workdir, tls=True)
    broker = next(gen)
    try:
        ca = broker.tls[0]
        url = 'amqps://localhost:%d' % broker.tls_port
        rc, out, err = probe(broker, 'send', '/queue/tls', 20, [url], AMQP_PROBE_CA=ca)
        assert rc == 0, err
        assert len([line for line in out if line.startswith('accepted')]) == 20
        for urls, env in (([url], {}),   # the system's CAs do not know ours
                          (['amqps://127.0.0.1:%d' % broker.tls_port],
                           {'AMQP_PROBE_CA': ca})):   # not its name
            with pytest.raises(subprocess.TimeoutExpired) as e:
                probe(broker, 'send', '/queue/tls', 1, urls, timeout=10, **env)
            out = text(e.value.stdout)
            assert 'down ' in out and 'up\n' not in out
            assert 'certificate verify failed' in out, out
    finally:
        gen.close()
