#include "imap/imap_error.h"

#include <stdarg.h>
#include <stdio.h>

void imap_error_set(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}
