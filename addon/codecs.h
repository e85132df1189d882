// SPDX-License-Identifier: GPL-2.0-only
/*
 * codecs.h - lz4 and zstd loaded at run time from their runtime libraries.
 *
 * We declare the few entry points we use ourselves and dlopen liblz4.so.1 and
 * libzstd.so.1, so building needs no -dev package (ARCHITECTURE.md decision 8). A
 * missing library makes that codec unavailable with a message saying which file was
 * looked for; nothing else fails.
 */
#ifndef PHOBOS_ADDON_CODECS_H
#define PHOBOS_ADDON_CODECS_H

#include <cstddef>
#include <string>

extern "C" {
#include "../kernel/common/phobos_log.h"
}

namespace phobos {

struct CodecInfo {
	bool available;
	std::string library;	// the soname looked for
	std::string version;	// the library's own version string, if loaded
	std::string error;	// why it is unavailable, if it is
};

// Load both libraries once (thread safe). Env overrides for tests:
// PHOBOS_LZ4_LIBRARY, PHOBOS_ZSTD_LIBRARY name another file to dlopen.
void codecs_init();
const CodecInfo &codec_info(unsigned int codec);	// PHOBOS_CODEC_LZ4 or _ZSTD

// phobos_log_env callbacks; ctx is unused (per-thread state lives in the codec module).
size_t codec_compress(void *ctx, unsigned int codec, const void *src, size_t len, void *dst,
		      size_t cap);
int codec_decompress(void *ctx, unsigned int codec, const void *src, size_t len, void *dst,
		     size_t out_len);

// The environment every addon worker hands to kernel/common.
const phobos_log_env *log_env();

}  // namespace phobos

#endif
