"""The e-Discovery changelog (issue: e-Discovery changelog with an audit
trail): every event in a hash-chained log with who, what and when;
per-message, per-user and per-mailbox histories from mailpubsubctl after a
scripted session against the real Cyrus (deliver, read, flag, move, rename
the folder, expunge); verify finds one altered byte at its record; records
past retention go only behind a signed checkpoint."""
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest

import xml.etree.ElementTree as ET

from harness import make_message, wait_until
from stack import (COMPONENT, TOP, Stack, error_of, event_items, iq_type,
                   subscribe_iq, validate_payload)

MID = '<ediscovery-1@harness.test>'
OTHER_MID = '<ediscovery-2@harness.test>'


def ctl_binary():
    path = os.environ.get('MAILPUBSUBCTL', os.path.join(TOP, 'build', 'mailpubsubctl'))
    if not os.access(path, os.X_OK):
        raise RuntimeError('mailpubsubctl not built at %s' % path)
    return path


def ctl(stack, *args, check=True):
    proc = subprocess.run([ctl_binary(), '-c', stack.conf] + list(args),
                          capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def records(stack, *args):
    out = ctl(stack, 'changelog', *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FORWARD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_CONTENT = 'urn:mailpubsub:content:0'
FIREHOSE = 'mailpubsub:firehose'


def make_stack(workdir, **extra):
    config = {'changelog': {},
              'firehose': {'subscribers': 'auditor@localhost:ediscovery bob@localhost:archive'}}
    config.update(extra)
    s = Stack(workdir, users=('alice', 'bob', 'auditor'), config=config)
    s.start()
    return s


@pytest.fixture
def estack(workdir):
    s = make_stack(workdir)
    try:
        yield s
    finally:
        s.stop()


def status_uidvalidity(m, mailbox):
    typ, data = m.status(mailbox, '(UIDVALIDITY)')
    assert typ == 'OK', data
    return int(re.search(rb'UIDVALIDITY (\d+)', data[0]).group(1))


def scripted_session(stack):
    """deliver, read, flag, move to Projects, rename Projects to Archive,
    delete + expunge there. Returns (t0, t1) around it, in seconds."""
    t0 = time.time()
    stack.cyrus.deliver('alice', make_message(subject='evidence', message_id=MID))
    stack.cyrus.deliver('alice', make_message(subject='noise', message_id=OTHER_MID))
    m = stack.cyrus.imap('alice')
    try:
        assert m.create('INBOX/Projects')[0] == 'OK'
        assert m.select('INBOX')[0] == 'OK'
        assert m.uid('FETCH', '1', '(BODY[])')[0] == 'OK'          # MessageRead
        assert m.uid('STORE', '1', '+FLAGS', '(\\Flagged)')[0] == 'OK'
        assert m.uid('MOVE', '1', 'INBOX/Projects')[0] == 'OK'
        assert m.rename('INBOX/Projects', 'INBOX/Archive')[0] == 'OK'
        assert m.select('INBOX/Archive')[0] == 'OK'
        assert m.uid('STORE', '1', '+FLAGS', '(\\Deleted)')[0] == 'OK'
        assert m.expunge()[0] == 'OK'
    finally:
        m.logout()
    return t0, time.time() + 1


def wait_for_record(stack, predicate, *args, timeout=15):
    got = []

    def ready():
        got[:] = records(stack, *args)
        return any(predicate(r) for r in got)
    wait_until(ready, timeout, what='changelog record')
    return got


def test_histories_after_a_session(estack):
    """Everything that happened to a Message-ID (across the move and the
    rename), what alice read or deleted, who touched a mailbox; each with
    who (user, login session, client IP), what and when."""
    t0, t1 = scripted_session(estack)
    hist = wait_for_record(
        estack, lambda r: r['event'] == 'MessageExpunge' and r['mailbox'] == 'INBOX/Archive',
        'message', '--message-id', MID)
    events = [r['event'] for r in hist]
    # in order: delivered, read, flagged, moved (copy in, expunged in INBOX),
    # then deleted and expunged in the renamed folder
    for want in ('MessageNew', 'MessageRead', 'FlagsSet', 'vnd.cmu.MessageMove',
                 'MessageTrash', 'MessageExpunge'):
        assert want in events, (want, events)
    assert events.index('MessageNew') < events.index('MessageRead') < \
        events.index('FlagsSet') < events.index('vnd.cmu.MessageMove') < \
        events.index('MessageTrash')
    assert all(MID in r['message_ids'] for r in hist)
    assert not any(OTHER_MID in r['message_ids'] for r in hist if r['event'] != 'MessageNew')
    new = hist[events.index('MessageNew')]
    assert (new['account'], new['mailbox'], new['uids'], new['service']) == \
        ('alice', 'INBOX', [1], 'lmtp')
    read = hist[events.index('MessageRead')]
    assert read['user'] == 'alice' and read['service'] == 'imap'
    assert read['client_ip'] == '127.0.0.1' and read['login_user'] == 'alice'
    assert read['session'] and read['uidvalidity'] == new['uidvalidity']
    move = hist[events.index('vnd.cmu.MessageMove')]
    assert (move['old_mailbox'], move['old_uids'], move['mailbox']) == \
        ('INBOX', [1], 'INBOX/Projects')
    last = hist[-1]
    assert (last['event'], last['mailbox']) == ('MessageExpunge', 'INBOX/Archive')
    assert all(h['time'] / 1e6 >= t0 - 1 for h in hist)
    ids = [r['id'] for r in hist]
    assert ids == sorted(ids)

    # what alice read or deleted in the window: this message and no other
    mine = records(estack, 'user', '--user', 'alice', '--from', str(int(t0)),
                   '--to', str(int(t1) + 1), '--events', 'MessageRead,MessageExpunge')
    assert {r['event'] for r in mine} == {'MessageRead', 'MessageExpunge'}
    assert all(r['message_ids'] == [MID] for r in mine)
    assert records(estack, 'user', '--user', 'alice', '--from', str(int(t1) + 3600)) == []
    assert records(estack, 'user', '--user', 'bob') == []

    # who accessed the renamed folder: the rename from Projects and the
    # expunge, with the user and client address
    arch = records(estack, 'mailbox', '--account', 'alice', '--node', 'INBOX/Archive')
    kinds = [r['event'] for r in arch]
    assert 'MailboxRename' in kinds and 'MessageExpunge' in kinds
    rename = arch[kinds.index('MailboxRename')]
    assert rename['old_mailbox'] == 'INBOX/Projects' and rename['user'] == 'alice'
    assert rename['client_ip'] == '127.0.0.1'
    proj = records(estack, 'mailbox', '--account', 'alice', '--node', 'INBOX/Projects')
    assert {'MailboxCreate', 'vnd.cmu.MessageMove', 'MailboxRename'} <= {r['event'] for r in proj}

    # Login events carry the client address themselves
    logins = records(estack, 'user', '--user', 'alice', '--events', 'Login')
    assert logins and all(r['client_ip'] == '127.0.0.1' for r in logins)


def test_verify_finds_one_altered_byte(estack):
    """verify passes over the untouched chain; one byte changed in one
    stored record fails exactly there; restored, it passes; a removed
    record fails at the next one."""
    scripted_session(estack)
    wait_for_record(estack, lambda r: r['mailbox'] == 'INBOX/Archive' and
                    r['event'] == 'MessageExpunge', 'message', '--message-id', MID)
    out = ctl(estack, 'changelog', 'verify').stdout
    n = int(re.match(r'OK: (\d+) records verified', out).group(1))
    assert n >= 10
    db = sqlite3.connect(estack.db, timeout=10)
    try:
        target = db.execute("SELECT id, record FROM changelog WHERE record LIKE"
                            " '%\"MessageRead\"%' ORDER BY id LIMIT 1").fetchone()
        rid, rec = target
        i = rec.index('"user":"alice"') + len('"user":"')
        tampered = rec[:i] + 'b' + rec[i + 1:]      # alice -> blice
        assert len(tampered) == len(rec)
        with db:
            db.execute('UPDATE changelog SET record = ? WHERE id = ?', (tampered, rid))
        proc = ctl(estack, 'changelog', 'verify', check=False)
        assert proc.returncode == 1
        assert proc.stdout.startswith('FAILED at record %d:' % rid), proc.stdout
        with db:
            db.execute('UPDATE changelog SET record = ? WHERE id = ?', (rec, rid))
        assert ctl(estack, 'changelog', 'verify').returncode == 0
        # a removed record: the next one no longer chains
        with db:
            db.execute('DELETE FROM changelog WHERE id = ?', (rid,))
        proc = ctl(estack, 'changelog', 'verify', check=False)
        assert proc.returncode == 1 and proc.stdout.startswith('FAILED at record %d:' % (rid + 1))
    finally:
        db.close()


def test_retention_behind_a_signed_checkpoint(workdir):
    """With [changelog] retention the daemon drops old records behind an
    HMAC-signed checkpoint: the rest still verifies with the key, not with
    another key, and the chain goes on."""
    key = os.path.join(workdir, 'changelog.key')
    with open(key, 'wb') as f:
        f.write(os.urandom(32))
    os.chmod(key, 0o600)
    s = make_stack(workdir, changelog={'retention': '4', 'key_file': key})
    try:
        s.cyrus.deliver('alice', make_message(subject='old', message_id=MID))
        wait_for_record(s, lambda r: r['event'] == 'MessageNew', 'message', '--message-id', MID)
        db = sqlite3.connect(s.db, timeout=10)
        try:
            wait_until(lambda: db.execute('SELECT count(*) FROM changelog_checkpoints')
                       .fetchone()[0] > 0 and
                       db.execute("SELECT count(*) FROM changelog_msgids WHERE message_id = ?",
                                  (MID,)).fetchone()[0] == 0, 20, what='checkpoint')
            last_dropped, = db.execute('SELECT max(last_dropped_id) FROM changelog_checkpoints'
                                       ).fetchone()
            first, = db.execute('SELECT min(id) FROM changelog').fetchone()
            assert first == last_dropped + 1
            kinds = [r[0] for r in db.execute('SELECT kind FROM changelog')]
            assert 'checkpoint' in kinds
        finally:
            db.close()
        s.cyrus.deliver('alice', make_message(subject='new', message_id=OTHER_MID))
        wait_for_record(s, lambda r: r['event'] == 'MessageNew', 'message',
                        '--message-id', OTHER_MID)
        out = ctl(s, 'changelog', 'verify').stdout
        assert int(re.match(r'OK: \d+ records verified \(chain from record (\d+)\)',
                            out).group(1)) >= first, out
        # the wrong key does not verify the checkpoint
        with open(key, 'wb') as f:
            f.write(os.urandom(32))
        proc = ctl(s, 'changelog', 'verify', check=False)
        assert proc.returncode == 1 and 'signature' in proc.stdout
    finally:
        s.stop()


def mam(client, qid, max_=None, after=None, before=None, start=None, end=None):
    """One MAM page: ([(id, payload, stamp, forwarded message)], <fin/>)."""
    form = ''
    fields = [(k, v) for k, v in (('start', start), ('end', end)) if v is not None]
    if fields:
        form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                "<value>%s</value></field>%s</x>" % (NS_MAM, ''.join(
                    "<field var='%s'><value>%s</value></field>" % f for f in fields)))
    rsm = ''
    if max_ is not None or after is not None or before is not None:
        rsm = "<set xmlns='%s'>%s%s%s</set>" % (
            NS_RSM, '<max>%d</max>' % max_ if max_ is not None else '',
            '<after>%s</after>' % after if after is not None else '',
            '<before>%s</before>' % before if before is not None else '')
    reply = client.iq("<iq type='set' to='%s'><query xmlns='%s' queryid='%s' node='%s'>%s%s"
                      "</query></iq>" % (COMPONENT, NS_MAM, qid, FIREHOSE, form, rsm))
    assert iq_type(reply) == 'result', ET.tostring(reply, 'unicode')
    fin = reply.find('{%s}fin' % NS_MAM)
    last = fin.find('{%s}set/{%s}last' % (NS_RSM, NS_RSM))
    results = []
    while last is not None and (not results or results[-1][0] != last.text):
        msg = client.wait_message(lambda m: m.find('{%s}result' % NS_MAM) is not None and
                                  m.find('{%s}result' % NS_MAM).get('queryid') == qid, 5)
        res = msg.find('{%s}result' % NS_MAM)
        fwd = res.find('{%s}forwarded' % NS_FORWARD)
        inner = fwd.find('{jabber:client}message')
        node, items = event_items(inner)
        assert node == FIREHOSE and items[0][0] == res.get('id')
        results.append((res.get('id'), items[0][1],
                        fwd.find('{%s}delay' % NS_DELAY).get('stamp'), inner))
    return results, fin


def test_mam_on_the_firehose(estack):
    """An ediscovery subscriber pages through the journal with MAM + RSM:
    every event once, in order, each the item as the firehose published
    it; start/end narrow it; other roles and other JIDs are refused."""
    auditor = estack.client('auditor')
    assert iq_type(auditor.iq(subscribe_iq(COMPONENT, FIREHOSE, auditor.jid.split('/')[0]))) \
        == 'result'
    scripted_session(estack)
    wait_for_record(estack, lambda r: r['event'] == 'MessageExpunge' and
                    r['mailbox'] == 'INBOX/Archive', 'message', '--message-id', MID)
    # the live item of the last event, to compare with its archived form
    live = {}
    # a message moved away before its content was fetched holds the
    # firehose for [firehose] fetch_attempts retries (1+2+4+8 s) before it
    # is recorded unavailable: on a loaded machine that happens here
    deadline = time.monotonic() + 30
    db = sqlite3.connect(estack.db, timeout=10)
    last_seq = db.execute('SELECT max(seq) FROM journal').fetchone()[0]
    while str(last_seq) not in live and time.monotonic() < deadline:
        msg = auditor.wait_message(lambda m: (event_items(m) or ('',))[0] == FIREHOSE,
                                   max(0.1, deadline - time.monotonic()))
        for iid, payload in event_items(msg)[1]:
            live[iid] = ET.tostring(payload, 'unicode')
    all_seqs = [str(r[0]) for r in db.execute('SELECT seq FROM journal ORDER BY seq')]
    times = dict(db.execute('SELECT seq, received_us FROM journal'))
    db.close()

    got, after, pages = [], None, 0
    while True:
        results, fin = mam(auditor, 'q%d' % pages, max_=4, after=after)
        pages += 1
        got += results
        if fin.get('complete') == 'true':
            break
        assert len(results) == 4 and fin.get('queryid') == 'q%d' % (pages - 1)
        after = fin.find('{%s}set/{%s}last' % (NS_RSM, NS_RSM)).text
    assert [r[0] for r in got] == all_seqs and pages >= 3
    for iid, payload, stamp, _ in got:
        validate_payload(payload)
        assert payload.get('seq') == iid
        if iid in live:
            assert ET.tostring(payload, 'unicode') == live[iid]
    assert any(iid in live for iid, *_ in got)
    new = [p for _, p, _, _ in got if p.get('type') == 'MessageNew']
    assert len(new) == 2
    # the second message stays in INBOX: its content is always retrieved
    # (the first is moved at once, and on a loaded machine may be gone
    # from INBOX before the firehose asks for it)
    c = new[1].find('{%s}content' % NS_CONTENT)
    assert c is not None and c.get('part') == 'headers'   # the ediscovery default

    # the last page, with <before/>
    results, fin = mam(auditor, 'last', max_=3, before='')
    assert [r[0] for r in results] == all_seqs[-3:]
    # a time window: from the fourth event on, to the sixth
    t3, t5 = times[int(all_seqs[3])], times[int(all_seqs[5])]
    iso = lambda us: time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(us // 1000000)) + \
        '.%06dZ' % (us % 1000000)
    results, fin = mam(auditor, 'win', start=iso(t3), end=iso(t5))
    seqs = [int(r[0]) for r in results]
    assert seqs == [int(q) for q in all_seqs if t3 <= times[int(q)] <= t5]
    assert int(all_seqs[3]) in seqs and int(all_seqs[5]) in seqs
    results, fin = mam(auditor, 'none', end='2001-01-01T00:00:00Z')
    assert results == [] and fin.get('complete') == 'true'

    # bob is an archive subscriber, alice nothing of the kind
    query = ("<iq type='set' to='%s'><query xmlns='%s' node='%s'/></iq>"
             % (COMPONENT, NS_MAM, FIREHOSE))
    assert error_of(estack.client('bob').iq(query))[:2] == ('auth', 'forbidden')
    assert error_of(estack.client('alice').iq(query))[:2] == ('cancel', 'item-not-found')
