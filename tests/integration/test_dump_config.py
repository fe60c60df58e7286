"""mailpubsubd --dump-config (issue: first contact, item 6): the defaults
without any configuration file, each section once, required options
marked; with -c FILE the file's effective values, printed even when the
daemon could not start with them (exit status 1, the reason on stderr);
and what it prints reads back as a configuration file."""
import os
import re
import subprocess

from stack import daemon_binary

SECTIONS = ['component', 'cyrus', 'json', 'delegate', 'firehose', 'changelog',
            'taps', 'store', 'pubsub', 'imap', 'imap_source', 'accounts', 'log',
            'control', 'metrics', 'bus', 'account_map']


def dump(*args):
    return subprocess.run([daemon_binary(), '--dump-config'] + list(args),
                          capture_output=True, text=True, timeout=20)


def sections(text):
    return re.findall(r'^\[(\w+)\]$', text, re.M)


def test_defaults_without_a_file(workdir):
    out = dump()
    assert out.returncode == 0, out.stderr
    assert out.stderr == ''
    assert sections(out.stdout) == SECTIONS
    assert '# Required.\ndomain = \n' in out.stdout
    assert '# Required unless secret_file is set.\nsecret = \n' in out.stdout
    assert '# Required with host.\nadmin_user = \n' in out.stdout
    assert '\nitems_per_node = 20\n' in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 78
    # it reads back: the same values, and still no domain
    path = os.path.join(workdir, 'defaults.conf')
    with open(path, 'w') as f:
        f.write(out.stdout)
    again = dump('-c', path)
    assert again.stdout == out.stdout
    assert again.returncode == 1
    assert '[component] domain is required' in again.stderr


def test_effective_values_of_a_file(workdir):
    path = os.path.join(workdir, 'mailpubsub.conf')
    secret = os.path.join(workdir, 'secret')
    with open(secret, 'w') as f:
        f.write('from-the-file\n')
    with open(path, 'w') as f:
        f.write('[component]\ndomain = events.example.org\nsecret_file = %s\n'
                '[pubsub]\nheartbeat_interval = 60\n[imap]\nlist_interval = 10\n'
                '[account_map]\nboss@corp.example = alice\n' % secret)
    out = dump('-c', path)
    assert out.returncode == 0, out.stderr
    assert sections(out.stdout) == SECTIONS
    assert '\ndomain = events.example.org\n' in out.stdout
    assert '\nsecret = (set, not shown)\n' in out.stdout
    assert 'from-the-file' not in out.stdout
    assert '\nshared_service = events.example.org\n' in out.stdout
    pubsub = out.stdout.split('\n[pubsub]\n')[1].split('\n[')[0]
    imap = out.stdout.split('\n[imap]\n')[1].split('\n[')[0]
    assert '\nheartbeat_interval = 60\n' in pubsub
    assert '\nlist_interval = 10\n' in imap
    assert out.stdout.endswith('[account_map]\n# bare-jid = imap-account, one per line\n'
                               '# A change needs a restart.\n'
                               'boss@corp.example = alice\n')

    missing = dump('-c', os.path.join(workdir, 'nothing.conf'))
    assert missing.returncode == 1 and missing.stdout == ''
    assert 'cannot open' in missing.stderr
