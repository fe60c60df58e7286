"""Benchmark: authorization decision times against a private Cyrus.

    /usr/bin/python3 bench/authz.py BUILD_DIR
Prints the cold (IMAP MYRIGHTS round trip) and warm (cache) decision times.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests', 'integration'))

from harness import Cyrus  # noqa: E402

USERS = ['u%02d' % i for i in range(20)]
MAILBOXES = 25


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else 'build'
    work = tempfile.mkdtemp(prefix='mailpubsub-bench-')
    os.chmod(work, 0o755)
    cyrus = Cyrus(work, os.path.join(work, 'notify.sock'))
    try:
        cyrus.start()
        cyrus.create_user('alice')
        imap = cyrus.imap('alice')
        for i in range(MAILBOXES):
            imap.create('INBOX/M%d' % i)
            # half the users may read, the others may only list
            for n, u in enumerate(USERS):
                imap.setacl('INBOX/M%d' % i, u, 'lr' if n % 2 == 0 else 'l')
        imap.logout()
        conf = os.path.join(work, 'bench.conf')
        with open(conf, 'w') as f:
            f.write('[component]\ndomain = events.localhost\nsecret = x\n'
                    '[imap]\nhost = 127.0.0.1\nport = %d\ntls = none\n'
                    'admin_user = admin\npassword = pw\n'
                    '[accounts]\njid_domains = localhost\n' % cyrus.imap_port)
        print('authorization decisions: %d identities x %d mailboxes, Cyrus on loopback'
              % (len(USERS), MAILBOXES), flush=True)
        subprocess.run([os.path.join(build, 'bench', 'authz_bench'), conf, 'alice',
                        'INBOX/M', str(MAILBOXES)] + ['%s@localhost' % u for u in USERS],
                       check=True)
    finally:
        cyrus.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
