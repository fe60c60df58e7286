/* Text written into raw XML (stanzas built as strings: notifications,
 * replies, payload wrappers), whatever its source. */
#ifndef MAILPUBSUB_XML_ESCAPE_H
#define MAILPUBSUB_XML_ESCAPE_H

/* XML-escapes text for an attribute value or text node, with whatever XML
 * 1.0 forbids replaced by U+FFFD. malloc()ed (the caller frees), NULL
 * when out of memory. */
char *xml_escape(const char *text);

#endif
