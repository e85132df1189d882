// SPDX-License-Identifier: GPL-2.0-only
/*
 * main.cc - the phobos native addon: module init, crc32c, codecs, block digests.
 *
 * One N-API function per core operation; arguments are checked here, policy lives in
 * src/dataplane/. Log writing and reading are in log_writer.cc and log_reader.cc.
 */
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "codecs.h"
#include "crc32c.h"
#include "io_util.h"
#include "log_file.h"
#include "napi_util.h"

namespace phobos {

void register_log_reader(Napi::Env env, Napi::Object exports);
void register_log_writer(Napi::Env env, Napi::Object exports);
void register_file_lock(Napi::Env env, Napi::Object exports);
void register_tree_walk(Napi::Env env, Napi::Object exports);
void register_tree_cache(Napi::Env env, Napi::Object exports);
void register_kernel_ctl(Napi::Env env, Napi::Object exports);
void register_unix_datagram(Napi::Env env, Napi::Object exports);

namespace {

// Inputs up to this size may be checksummed synchronously (about 6 us at 10 GB/s).
constexpr size_t kSmallCrcMax = 64u << 10;

using CrcFn = uint32_t (*)(uint32_t, const void *, size_t);

CrcFn crc_impl(const std::string &name)
{
	if (name == "portable")
		return phobos_crc32c_portable;
	if (name == "sse42")
		return phobos_crc32c_hw_available() ? phobos_crc32c_sse42 : nullptr;
	return name == "auto" ? phobos_crc32c : nullptr;
}

class CrcWorker : public PromiseWorker {
public:
	CrcWorker(Napi::Env env, Napi::Uint8Array buf, uint32_t seed, CrcFn fn)
		: PromiseWorker(env), keep_(Napi::Persistent(buf)), data_(buf.Data()),
		  len_(buf.ByteLength()), seed_(seed), fn_(fn)
	{
	}
	void Execute() override { crc_ = fn_(seed_, data_, len_); }
	Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, crc_); }

private:
	Napi::Reference<Napi::Uint8Array> keep_;
	const uint8_t *data_;
	size_t len_;
	uint32_t seed_, crc_ = 0;
	CrcFn fn_;
};

// crc32c(buf, seed = 0, impl = "auto") -> Promise<number>
Napi::Value Crc32c(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	Napi::Uint8Array buf;
	uint64_t seed = 0;
	if (!arg_buffer(info, 0, "data", &buf) || (info.Length() > 1 && !arg_u64(info, 1, "seed", &seed)))
		return env.Undefined();
	std::string impl = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value()
								  : "auto";
	CrcFn fn = crc_impl(impl);
	if (!fn)
		return throw_error(env, "crc32c implementation '" + impl + "' is not available here",
				   "EPHOBOS_ARG");
	return (new CrcWorker(env, buf, static_cast<uint32_t>(seed), fn))->Start();
}

// crc32cSmall(buf, seed = 0) -> number, synchronous, for at most 64 KiB.
Napi::Value Crc32cSmall(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	Napi::Uint8Array buf;
	uint64_t seed = 0;
	if (!arg_buffer(info, 0, "data", &buf) || (info.Length() > 1 && !arg_u64(info, 1, "seed", &seed)))
		return env.Undefined();
	if (buf.ByteLength() > kSmallCrcMax)
		return throw_error(env, "crc32cSmall takes at most 64 KiB; use crc32c() for larger data",
				   "EPHOBOS_ARG");
	return Napi::Number::New(env, phobos_crc32c(static_cast<uint32_t>(seed), buf.Data(),
						    buf.ByteLength()));
}

Napi::Value CodecInfoJs(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	Napi::Object o = Napi::Object::New(env);
	const char *names[] = {"none", "lz4", "zstd"};
	for (unsigned c = 0; c < PHOBOS_CODEC_COUNT; c++) {
		const CodecInfo &ci = codec_info(c);
		Napi::Object e = Napi::Object::New(env);
		e.Set("available", Napi::Boolean::New(env, ci.available));
		e.Set("library", ci.library);
		e.Set("version", ci.version);
		e.Set("error", ci.error);
		o.Set(names[c], e);
	}
	o.Set("crc32c", phobos_crc32c_hw_available() ? "sse42" : "portable");
	return o;
}

// codecRoundTrip(codec, buf, recordBytes): compress and decompress buf in records,
// verify, and time both directions on the worker thread.
class RoundTripWorker : public PromiseWorker {
public:
	RoundTripWorker(Napi::Env env, unsigned codec, Napi::Uint8Array buf, size_t record)
		: PromiseWorker(env), codec_(codec), keep_(Napi::Persistent(buf)), data_(buf.Data()),
		  len_(buf.ByteLength()), record_(record)
	{
	}

	void Execute() override
	{
		const CodecInfo &ci = codec_info(codec_);
		if (!ci.available)
			return Fail(ci.error, "EPHOBOS_CODEC");
		std::vector<std::vector<uint8_t>> packed;
		std::vector<uint8_t> out(record_ + record_ / 2 + 1024), back(record_);
		auto t0 = std::chrono::steady_clock::now();
		for (size_t off = 0; off < len_; off += record_) {
			size_t n = len_ - off < record_ ? len_ - off : record_;
			size_t c = codec_compress(nullptr, codec_, data_ + off, n, out.data(), out.size());
			if (c == 0)
				return Fail("compression failed", "EPHOBOS_CODEC");
			packed.emplace_back(out.data(), out.data() + c);
			compressed_ += c;
		}
		auto t1 = std::chrono::steady_clock::now();
		size_t i = 0;
		for (size_t off = 0; off < len_; off += record_, i++) {
			size_t n = len_ - off < record_ ? len_ - off : record_;
			if (codec_decompress(nullptr, codec_, packed[i].data(), packed[i].size(), back.data(),
					     n) != PL_OK ||
			    memcmp(back.data(), data_ + off, n) != 0)
				return Fail("round trip mismatch at offset " + std::to_string(off),
					    "EPHOBOS_CODEC");
		}
		auto t2 = std::chrono::steady_clock::now();
		compress_ns_ = std::chrono::duration<double, std::nano>(t1 - t0).count();
		decompress_ns_ = std::chrono::duration<double, std::nano>(t2 - t1).count();
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Object o = Napi::Object::New(env);
		o.Set("inputBytes", Napi::Number::New(env, static_cast<double>(len_)));
		o.Set("outputBytes", Napi::Number::New(env, static_cast<double>(compressed_)));
		o.Set("compressNs", Napi::Number::New(env, compress_ns_));
		o.Set("decompressNs", Napi::Number::New(env, decompress_ns_));
		return o;
	}

private:
	unsigned codec_;
	Napi::Reference<Napi::Uint8Array> keep_;
	const uint8_t *data_;
	size_t len_, record_;
	size_t compressed_ = 0;
	double compress_ns_ = 0, decompress_ns_ = 0;
};

Napi::Value CodecRoundTrip(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	uint64_t codec, record;
	Napi::Uint8Array buf;
	if (!arg_u64(info, 0, "codec", &codec) || !arg_buffer(info, 1, "data", &buf) ||
	    !arg_u64(info, 2, "recordBytes", &record))
		return env.Undefined();
	if (codec == PHOBOS_CODEC_NONE || codec >= PHOBOS_CODEC_COUNT || record == 0 ||
	    record > PHOBOS_LOG_MAX_LEN)
		return throw_error(env, "codec must be lz4 (1) or zstd (2), recordBytes 1..4 MiB",
				   "EPHOBOS_ARG");
	return (new RoundTripWorker(env, static_cast<unsigned>(codec), buf,
				    static_cast<size_t>(record)))->Start();
}

// blockDigests(path, offset, length, blockBytes) -> Promise<Uint32Array>: crc32c of each
// block of [offset, offset+length); the last block may be short. Fast full sync compares
// these between hosts.
class DigestWorker : public PromiseWorker {
public:
	DigestWorker(Napi::Env env, std::string path, uint64_t offset, uint64_t length, uint64_t block)
		: PromiseWorker(env), path_(std::move(path)), offset_(offset), length_(length),
		  block_(block)
	{
	}

	void Execute() override
	{
		int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return Fail(sys_message("open " + path_, errno), errno);
		off_t size = lseek(fd, 0, SEEK_END);
		if (offset_ + length_ > static_cast<uint64_t>(size)) {
			close(fd);
			return Fail(path_ + ": range " + std::to_string(offset_) + "+" +
					    std::to_string(length_) + " ends past the end (" +
					    std::to_string(size) + " bytes)",
				    "EPHOBOS_RANGE");
		}
		// Read whole blocks in chunks of about 8 MiB.
		size_t per_chunk = block_ >= (8u << 20) ? 1 : static_cast<size_t>((8u << 20) / block_);
		AlignedBuffer chunk(per_chunk * block_);
		uint64_t pos = offset_, end = offset_ + length_;
		while (pos < end) {
			size_t want = static_cast<size_t>(end - pos < chunk.size() ? end - pos : chunk.size());
			size_t got = 0;
			while (got < want) {
				ssize_t n = pread(fd, chunk.data() + got, want - got,
						  static_cast<off_t>(pos + got));
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					int err = n < 0 ? errno : EIO;
					close(fd);
					return Fail(sys_message("read " + path_, err), err);
				}
				got += static_cast<size_t>(n);
			}
			for (size_t b = 0; b < got; b += block_) {
				size_t n = got - b < block_ ? got - b : static_cast<size_t>(block_);
				digests_.push_back(phobos_crc32c(0, chunk.data() + b, n));
			}
			pos += got;
		}
		close(fd);
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Uint32Array out = Napi::Uint32Array::New(env, digests_.size());
		for (size_t i = 0; i < digests_.size(); i++)
			out[i] = digests_[i];
		return out;
	}

private:
	std::string path_;
	uint64_t offset_, length_, block_;
	std::vector<uint32_t> digests_;
};

Napi::Value BlockDigests(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path;
	uint64_t offset, length, block;
	if (!arg_string(info, 0, "path", &path) || !arg_u64(info, 1, "offset", &offset) ||
	    !arg_u64(info, 2, "length", &length) || !arg_u64(info, 3, "blockBytes", &block))
		return env.Undefined();
	if (block == 0 || block > (64u << 20) || offset + length < offset)
		return throw_error(env, "blockBytes must be 1..64 MiB and the range must not overflow",
				   "EPHOBOS_ARG");
	return (new DigestWorker(env, path, offset, length, block))->Start();
}

// writeBatch(fd, offsets: Float64Array, buffers: Uint8Array[]) -> Promise<void>: pwrite
// each buffer at its offset, in order, in one worker job. The userspace engine's
// writeback of many small random writes costs one thread hop per batch, not per write.
class WriteBatchWorker : public PromiseWorker {
public:
	WriteBatchWorker(Napi::Env env, int fd, std::vector<uint64_t> offsets,
			 std::vector<std::pair<const uint8_t *, size_t>> pieces, Napi::Array keep)
		: PromiseWorker(env), fd_(fd), offsets_(std::move(offsets)), pieces_(std::move(pieces)),
		  keep_(Napi::Persistent(keep))
	{
	}

	void Execute() override
	{
		for (size_t i = 0; i < pieces_.size(); i++) {
			int err = pwrite_all(fd_, pieces_[i].first, pieces_[i].second, offsets_[i]);
			if (err)
				return Fail(sys_message("write at offset " + std::to_string(offsets_[i]), err), err);
		}
	}

	Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

private:
	int fd_;
	std::vector<uint64_t> offsets_;
	std::vector<std::pair<const uint8_t *, size_t>> pieces_;
	Napi::Reference<Napi::Array> keep_;	// the buffers stay alive until the job ends
};

Napi::Value WriteBatch(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	uint64_t fd;
	if (!arg_u64(info, 0, "fd", &fd))
		return env.Undefined();
	if (info.Length() < 3 || !info[1].IsTypedArray() || !info[2].IsArray())
		return throw_error(env, "writeBatch(fd, offsets: Float64Array, buffers: Uint8Array[])", "EPHOBOS_ARG");
	Napi::Float64Array offsets = info[1].As<Napi::Float64Array>();
	Napi::Array buffers = info[2].As<Napi::Array>();
	if (offsets.ElementLength() != buffers.Length())
		return throw_error(env, "writeBatch: one offset per buffer", "EPHOBOS_ARG");
	std::vector<uint64_t> offs(offsets.ElementLength());
	std::vector<std::pair<const uint8_t *, size_t>> pieces(buffers.Length());
	for (uint32_t i = 0; i < buffers.Length(); i++) {
		Napi::Value b = buffers.Get(i);
		double o = offsets[i];
		if (!b.IsTypedArray() || o < 0)
			return throw_error(env, "writeBatch: buffers must be Uint8Arrays, offsets >= 0", "EPHOBOS_ARG");
		Napi::Uint8Array u = b.As<Napi::Uint8Array>();
		offs[i] = static_cast<uint64_t>(o);
		pieces[i] = {u.Data(), u.ByteLength()};
	}
	return (new WriteBatchWorker(env, static_cast<int>(fd), std::move(offs), std::move(pieces), buffers))->Start();
}

// deviceSize(path) -> bytes: the size of a block device or file (lseek to the end; fstat
// reports 0 for block devices). Two syscalls, so synchronous.
Napi::Value DeviceSize(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path;
	if (!arg_string(info, 0, "path", &path))
		return env.Undefined();
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		return throw_error(env, sys_message("open " + path, err), errno_name(err).c_str());
	}
	off_t end = lseek(fd, 0, SEEK_END);
	int err = errno;
	close(fd);
	if (end < 0)
		return throw_error(env, sys_message("size of " + path, err), errno_name(err).c_str());
	return Napi::Number::New(env, static_cast<double>(end));
}

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	codecs_init();
	exports.Set("abiVersion", Napi::Number::New(env, 2));
	exports.Set("formatVersion", Napi::Number::New(env, PHOBOS_LOG_VERSION));
	exports.Set("maxRecordLength", Napi::Number::New(env, PHOBOS_LOG_MAX_LEN));
	exports.Set("crc32c", Napi::Function::New(env, Crc32c));
	exports.Set("crc32cSmall", Napi::Function::New(env, Crc32cSmall));
	exports.Set("codecInfo", Napi::Function::New(env, CodecInfoJs));
	exports.Set("codecRoundTrip", Napi::Function::New(env, CodecRoundTrip));
	exports.Set("blockDigests", Napi::Function::New(env, BlockDigests));
	exports.Set("deviceSize", Napi::Function::New(env, DeviceSize));
	exports.Set("writeBatch", Napi::Function::New(env, WriteBatch));
	register_log_reader(env, exports);
	register_log_writer(env, exports);
	register_file_lock(env, exports);
	register_tree_walk(env, exports);
	register_tree_cache(env, exports);
	register_kernel_ctl(env, exports);
	register_unix_datagram(env, exports);
	return exports;
}

}  // namespace
}  // namespace phobos

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports)
{
	return phobos::Init(env, exports);
}

NODE_API_MODULE(phobos, InitAddon)
