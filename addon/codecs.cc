// SPDX-License-Identifier: GPL-2.0-only
/*
 * codecs.cc - dlopen'ed lz4 and zstd, and the phobos_log_env built on them.
 */
#include "codecs.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "crc32c.h"

namespace phobos {
namespace {

// The subset of the lz4 and zstd ABIs we call, declared here on purpose (no -dev headers).
using Lz4Compress = int (*)(const char *src, char *dst, int src_size, int dst_capacity);
using Lz4Decompress = int (*)(const char *src, char *dst, int compressed_size, int dst_capacity);
using Lz4Version = const char *(*)();
using ZstdCreate = void *(*)();
using ZstdFree = size_t (*)(void *);
using ZstdCompressCCtx = size_t (*)(void *cctx, void *dst, size_t cap, const void *src, size_t len,
				    int level);
using ZstdDecompressDCtx = size_t (*)(void *dctx, void *dst, size_t cap, const void *src,
				      size_t len);
using ZstdIsError = unsigned (*)(size_t);
using ZstdVersion = const char *(*)();

// Level 1: 356 MB/s at 64 KiB records with a ratio close to level 3 (reference/node-ecosystem.md).
constexpr int kZstdLevel = 1;

struct Lz4Api {
	Lz4Compress compress = nullptr;
	Lz4Decompress decompress = nullptr;
};

struct ZstdApi {
	ZstdCreate create_cctx = nullptr;
	ZstdFree free_cctx = nullptr;
	ZstdCreate create_dctx = nullptr;
	ZstdFree free_dctx = nullptr;
	ZstdCompressCCtx compress = nullptr;
	ZstdDecompressDCtx decompress = nullptr;
	ZstdIsError is_error = nullptr;
};

Lz4Api lz4;
ZstdApi zstd;
CodecInfo infos[PHOBOS_CODEC_COUNT];
std::once_flag once;

template <typename T>
bool bind(void *lib, const char *name, T *fn, std::string *error)
{
	*fn = reinterpret_cast<T>(dlsym(lib, name));
	if (!*fn)
		*error = std::string("symbol ") + name + " missing";
	return *fn != nullptr;
}

void *open_library(CodecInfo *info, const char *env_name, const char *soname)
{
	const char *override_name = std::getenv(env_name);

	info->library = override_name && *override_name ? override_name : soname;
	void *lib = dlopen(info->library.c_str(), RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char *why = dlerror();
		info->error = "cannot load " + info->library + ": " + (why ? why : "unknown error");
	}
	return lib;
}

void load_lz4()
{
	CodecInfo *info = &infos[PHOBOS_CODEC_LZ4];
	void *lib = open_library(info, "PHOBOS_LZ4_LIBRARY", "liblz4.so.1");
	Lz4Version version = nullptr;

	if (!lib)
		return;
	if (bind(lib, "LZ4_compress_default", &lz4.compress, &info->error) &&
	    bind(lib, "LZ4_decompress_safe", &lz4.decompress, &info->error) &&
	    bind(lib, "LZ4_versionString", &version, &info->error)) {
		info->version = version();
		info->available = true;
		return;
	}
	info->error = info->library + ": " + info->error;
	lz4 = Lz4Api();
}

void load_zstd()
{
	CodecInfo *info = &infos[PHOBOS_CODEC_ZSTD];
	void *lib = open_library(info, "PHOBOS_ZSTD_LIBRARY", "libzstd.so.1");
	ZstdVersion version = nullptr;

	if (!lib)
		return;
	if (bind(lib, "ZSTD_createCCtx", &zstd.create_cctx, &info->error) &&
	    bind(lib, "ZSTD_freeCCtx", &zstd.free_cctx, &info->error) &&
	    bind(lib, "ZSTD_createDCtx", &zstd.create_dctx, &info->error) &&
	    bind(lib, "ZSTD_freeDCtx", &zstd.free_dctx, &info->error) &&
	    bind(lib, "ZSTD_compressCCtx", &zstd.compress, &info->error) &&
	    bind(lib, "ZSTD_decompressDCtx", &zstd.decompress, &info->error) &&
	    bind(lib, "ZSTD_isError", &zstd.is_error, &info->error) &&
	    bind(lib, "ZSTD_versionString", &version, &info->error)) {
		info->version = version();
		info->available = true;
		return;
	}
	info->error = info->library + ": " + info->error;
	zstd = ZstdApi();
}

// zstd contexts are reused per thread: creating one per record costs more than level 1
// compression of a 64 KiB record.
struct ZstdContexts {
	void *cctx = nullptr;
	void *dctx = nullptr;
	~ZstdContexts()
	{
		if (cctx)
			zstd.free_cctx(cctx);
		if (dctx)
			zstd.free_dctx(dctx);
	}
};
thread_local ZstdContexts zstd_contexts;

size_t zstd_compress(const void *src, size_t len, void *dst, size_t cap)
{
	if (!zstd_contexts.cctx)
		zstd_contexts.cctx = zstd.create_cctx();
	if (!zstd_contexts.cctx)
		return 0;
	size_t n = zstd.compress(zstd_contexts.cctx, dst, cap, src, len, kZstdLevel);
	return zstd.is_error(n) ? 0 : n;
}

int zstd_decompress(const void *src, size_t len, void *dst, size_t out_len)
{
	if (!zstd_contexts.dctx)
		zstd_contexts.dctx = zstd.create_dctx();
	if (!zstd_contexts.dctx)
		return PL_E_DECOMPRESS;
	size_t n = zstd.decompress(zstd_contexts.dctx, dst, out_len, src, len);
	return zstd.is_error(n) || n != out_len ? static_cast<int>(PL_E_DECOMPRESS) : PL_OK;
}

phobos_log_env env = {phobos_crc32c, codec_compress, codec_decompress, nullptr};

}  // namespace

void codecs_init()
{
	std::call_once(once, [] {
		phobos_crc32c_init();
		infos[PHOBOS_CODEC_NONE].available = true;
		load_lz4();
		load_zstd();
	});
}

const CodecInfo &codec_info(unsigned int codec)
{
	return infos[codec < PHOBOS_CODEC_COUNT ? codec : static_cast<unsigned int>(PHOBOS_CODEC_NONE)];
}

size_t codec_compress(void *, unsigned int codec, const void *src, size_t len, void *dst,
		      size_t cap)
{
	// lz4's API takes int sizes; records are at most 4 MiB so this never truncates.
	if (codec == PHOBOS_CODEC_LZ4 && lz4.compress) {
		int n = lz4.compress(static_cast<const char *>(src), static_cast<char *>(dst),
				     static_cast<int>(len), static_cast<int>(cap));
		return n > 0 ? static_cast<size_t>(n) : 0;
	}
	if (codec == PHOBOS_CODEC_ZSTD && zstd.compress)
		return zstd_compress(src, len, dst, cap);
	return 0;
}

int codec_decompress(void *, unsigned int codec, const void *src, size_t len, void *dst,
		     size_t out_len)
{
	if (codec == PHOBOS_CODEC_LZ4) {
		if (!lz4.decompress)
			return PL_E_CODEC_UNAVAILABLE;
		int n = lz4.decompress(static_cast<const char *>(src), static_cast<char *>(dst),
				       static_cast<int>(len), static_cast<int>(out_len));
		return n == static_cast<int>(out_len) ? static_cast<int>(PL_OK) : PL_E_DECOMPRESS;
	}
	if (codec == PHOBOS_CODEC_ZSTD)
		return zstd.decompress ? zstd_decompress(src, len, dst, out_len)
				       : static_cast<int>(PL_E_CODEC_UNAVAILABLE);
	return PL_E_CODEC;
}

const phobos_log_env *log_env()
{
	codecs_init();
	return &env;
}

}  // namespace phobos
