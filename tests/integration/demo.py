"""Quick start: private Prosody + Cyrus + mailpubsubd on 127.0.0.1, a
subscribed XMPP client, and a few mail actions whose events it prints.

    /usr/bin/python3 tests/integration/demo.py [--keep]
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import make_message, wait_until  # noqa: E402
from stack import (NS_ITEM, NS_PUBSUB, Stack, child_text, event_items,  # noqa: E402
                   iq_type, items_iq, mailbox_of, service_jid, subscribe_iq)


def show(msg, t0):
    node, items = event_items(msg)
    delayed = msg.find('{urn:xmpp:delay}delay') is not None
    for item_id, p in items:
        box = mailbox_of(p)
        extra = []
        for name in ('uidset', 'messages', 'unseen'):
            v = child_text(p, name)
            if v is not None:
                extra.append('%s=%s' % (name, v))
        if box is not None and box.get('uid'):
            extra.insert(0, 'uid=%s' % box.get('uid'))
        flags = [f.text for f in p.iter('{%s}flag' % NS_ITEM)]
        if flags:
            extra.append('flags=%s' % ','.join(flags))
        when = ('last item' if delayed else
                '+%6.1f ms' % ((time.monotonic() - t0) * 1000))
        print('  %-10s %-14s node=%-16s item=%s %s' % (
            when, p.get('type'), node, item_id, ' '.join(extra)), flush=True)


def step(alice, what, action, expect):
    print('- %s' % what, flush=True)
    t0 = time.monotonic()
    action()
    for _ in range(expect):
        show(alice.wait_message(lambda m: event_items(m) is not None, 10), t0)


def main():
    keep = '--keep' in sys.argv
    workdir = tempfile.mkdtemp(prefix='mailpubsub-demo-')
    os.chmod(workdir, 0o755)
    stack = Stack(workdir, users=('alice',))
    try:
        print('starting Prosody, mailpubsubd and Cyrus IMAP in %s' % workdir, flush=True)
        stack.start()
        print('  Prosody c2s 127.0.0.1:%d, component %d; Cyrus IMAP %d, LMTP %d' % (
            stack.prosody.c2s_port, stack.prosody.component_port,
            stack.cyrus.imap_port, stack.cyrus.lmtp_port), flush=True)
        stack.cyrus.deliver('alice', make_message(subject='welcome'))
        alice = stack.client('alice')
        svc = service_jid('alice')
        wait_until(lambda: iq_type(alice.iq(items_iq(svc, 'INBOX'))) == 'result',
                   10, what='INBOX node')
        print('alice@localhost subscribes to node INBOX of %s' % svc, flush=True)
        reply = alice.iq(subscribe_iq(svc, 'INBOX', 'alice@localhost'))
        sub = reply.find('{%s}pubsub/{%s}subscription' % (NS_PUBSUB, NS_PUBSUB))
        print('  subscription=%s subid=%s' % (sub.get('subscription'), sub.get('subid')))
        show(alice.wait_message(lambda m: event_items(m) is not None, 10), time.monotonic())
        imap = stack.cyrus.imap('alice')
        step(alice, 'LMTP delivers a message to alice', lambda: stack.cyrus.deliver(
            'alice', make_message(subject='hello from the demo')), 1)
        imap.select('INBOX')
        step(alice, 'alice reads it over IMAP', lambda: imap.fetch('2', '(BODY[])'), 1)
        step(alice, 'alice flags it', lambda: imap.store('2', '+FLAGS', '(\\Flagged)'), 1)
        step(alice, 'alice deletes and expunges it',
             lambda: (imap.store('2', '+FLAGS', '(\\Deleted)'), imap.expunge()), 2)
        imap.logout()
        print('events flowed: Cyrus -> mailpubsubd -> Prosody -> alice', flush=True)
        if keep:
            print('running until Ctrl-C (log: %s)' % stack.daemon.logfile, flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
