"""A synchronous XEP-0114 component on slixmpp's ComponentXMPP, for tests in
which a component (a message-waiting gateway, say) is the subscriber.

Mirrors harness.XmppClient: iq() returns the reply, result or error, and
received <message/>s go to ``self.messages``; both as Elements in the
jabber:client namespace, so the stanza helpers of stack.py apply. The
component's own stream namespace is jabber:component:accept.

slixmpp 1.8 as a component misreads an IQ error's condition (NOTES.md): the
raw reply is returned instead, and its xep_0060 plugin would take pubsub
notifications away from the message handlers, so no plugin is loaded.
"""
import asyncio
import copy
import xml.etree.ElementTree as ET

from harness import XmppClient

NS_COMPONENT = 'jabber:component:accept'
NS_CLIENT = 'jabber:client'


def _as_client_ns(elem):
    """A deep copy of elem with jabber:component:accept tags renamed to
    jabber:client (what a client-side reader expects)."""
    out = copy.deepcopy(elem)
    for el in out.iter():
        if isinstance(el.tag, str) and el.tag.startswith('{%s}' % NS_COMPONENT):
            el.tag = '{%s}%s' % (NS_CLIENT, el.tag[len(NS_COMPONENT) + 2:])
    return out


class XmppComponent(XmppClient):
    """Sends, waits and disconnects as harness.XmppClient does."""

    def __init__(self):
        super().__init__(plugins=())

    def connect(self, jid, secret, port, host='127.0.0.1', timeout=15.0):
        """Connect as component jid (a bare domain) and block until the
        server accepted the handshake."""
        import slixmpp
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        self._start_loop('component-%s' % jid)

        async def setup():
            x = slixmpp.ComponentXMPP(jid, secret, host, port)
            x.loop = self._loop
            started = self._session_started(x, {
                'connection_failed': lambda ev: 'component connection failed: %s' % (ev,),
                'disconnected': lambda ev: 'component %s refused' % jid})
            x.register_handler(Callback(
                'component messages', MatchXPath('{%s}message' % NS_COMPONENT),
                lambda st: self.messages.put(_as_client_ns(st.xml))))
            x.connect()
            self.xmpp = x
            await asyncio.wait_for(started, timeout)
            self.jid = jid
        try:
            self._call(setup(), timeout + 5)
        except BaseException:
            self.disconnect()
            raise
        return self

    def iq(self, stanza, timeout=10.0):
        """Send an IQ given as an XML string (no namespace on <iq/>; its
        from is the component) and return the reply as an Element."""
        from slixmpp.exceptions import IqError, IqTimeout
        from slixmpp.stanza import Iq
        elem = ET.fromstring("<w xmlns='%s'>%s</w>" % (NS_COMPONENT, stanza))[0]

        async def go():
            iq = Iq(self.xmpp, xml=elem)
            iq['from'] = self.jid
            if not iq['id']:
                iq['id'] = self.xmpp.new_id()
            try:
                reply = await iq.send(timeout=timeout)
            except IqError as e:
                reply = e.iq
            except IqTimeout:
                raise TimeoutError('no reply to iq id=%s' % iq['id'])
            return _as_client_ns(reply.xml)
        return self._call(go(), timeout + 5)
