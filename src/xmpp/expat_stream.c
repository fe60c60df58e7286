#include "xmpp/expat_stream.h"

#include <dlfcn.h>
#include <expat.h>
#include <stddef.h>

typedef XML_Parser create_mm_fn(const XML_Char *encoding,
				const XML_Memory_Handling_Suite *memsuite,
				const XML_Char *namespace_sep);
typedef XML_Bool reset_fn(XML_Parser parser, const XML_Char *encoding);
typedef XML_Bool deferral_fn(XML_Parser parser, XML_Bool enabled);

/* Looked up at run time: older expat versions have no such function. */
static deferral_fn *deferral_setter(void)
{
	static deferral_fn *set;
	static bool looked;

	if (!looked) {
		set = (deferral_fn *)dlsym(RTLD_DEFAULT, "XML_SetReparseDeferralEnabled");
		looked = true;
	}
	return set;
}

static void no_deferral(XML_Parser parser)
{
	deferral_fn *set = deferral_setter();

	if (parser != NULL && set != NULL)
		set(parser, XML_FALSE);
}

XML_Parser XML_ParserCreate_MM(const XML_Char *encoding,
			       const XML_Memory_Handling_Suite *memsuite,
			       const XML_Char *namespace_sep)
{
	static create_mm_fn *real;
	XML_Parser parser;

	if (real == NULL)
		real = (create_mm_fn *)dlsym(RTLD_NEXT, "XML_ParserCreate_MM");
	if (real == NULL)
		return NULL;
	parser = real(encoding, memsuite, namespace_sep);
	no_deferral(parser);
	return parser;
}

/* A reset restores expat's default, deferral included. */
XML_Bool XML_ParserReset(XML_Parser parser, const XML_Char *encoding)
{
	static reset_fn *real;
	XML_Bool ok;

	if (real == NULL)
		real = (reset_fn *)dlsym(RTLD_NEXT, "XML_ParserReset");
	if (real == NULL)
		return XML_FALSE;
	ok = real(parser, encoding);
	no_deferral(parser);
	return ok;
}

bool expat_stream_deferral_off(void)
{
	return deferral_setter() != NULL;
}
