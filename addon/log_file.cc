// SPDX-License-Identifier: GPL-2.0-only
#include "log_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>

#include "codecs.h"

namespace phobos {

// 8 MiB reads keep the syscall count low while a scanner stays near 12 MiB resident.
constexpr size_t kChunkBytes = 8u << 20;
static_assert(kChunkBytes >= PHOBOS_LOG_MAX_RECORD, "a chunk must hold the largest record");

AlignedBuffer::AlignedBuffer(size_t size) : data_(nullptr), size_(size)
{
	void *p = nullptr;
	// Built without exceptions: like operator new, running out of memory ends the process.
	if (posix_memalign(&p, 4096, size ? size : 4096) != 0) {
		fprintf(stderr, "phobos: out of memory allocating %zu bytes\n", size);
		abort();
	}
	data_ = static_cast<uint8_t *>(p);
}

AlignedBuffer::~AlignedBuffer()
{
	free(data_);
}

const char *scan_status_name(ScanStatus s)
{
	switch (s) {
	case ScanStatus::kRecord:
		return "record";
	case ScanStatus::kEnd:
		return "end";
	case ScanStatus::kNeedMore:
		return "need-more";
	case ScanStatus::kTorn:
		return "torn";
	case ScanStatus::kCorrupt:
		return "corrupt";
	case ScanStatus::kDamaged:
		return "damaged";
	case ScanStatus::kIoError:
		return "io-error";
	}
	return "unknown";
}

const char *fault_code(int err)
{
	static const char *const codes[PL_E_COUNT] = {
		"ok", "truncated", "bad-magic", "bad-version", "header-crc",
		"bad-type", "bad-codec", "bad-length", "bad-stored-length", "device-range",
		"synced-pos", "reserved", "padding", "sequence", "decompress",
		"payload-crc", "codec-unavailable", "no-space", "invalid",
	};
	return err >= 0 && err < PL_E_COUNT ? codes[err] : "unknown";
}

FileScanner::FileScanner(int fd, uint64_t file_size, uint64_t from, uint64_t expect_seq,
			 bool final)
	: fd_(fd), file_size_(file_size), pos_(from), expect_seq_(expect_seq), final_(final),
	  chunk_(kChunkBytes), scratch_(PHOBOS_LOG_MAX_LEN)
{
}

// Make the chunk start at offset and hold as much of the file as fits.
bool FileScanner::Fill(uint64_t offset)
{
	uint64_t want = file_size_ > offset ? file_size_ - offset : 0;
	size_t len = want < kChunkBytes ? static_cast<size_t>(want) : kChunkBytes;
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd_, chunk_.data() + got, len - got, static_cast<off_t>(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			io_errno_ = errno;
			return false;
		}
		if (n == 0)
			break;	// the file shrank under us: treat what we have as its end
		got += static_cast<size_t>(n);
	}
	if (got < len)
		file_size_ = offset + got;
	chunk_start_ = offset;
	chunk_len_ = got;
	return true;
}

// Search the rest of the file for a header whose synced_pos proves bad_offset durable.
bool FileScanner::FindEvidence(uint64_t bad_offset, uint64_t *at)
{
	uint64_t offset = bad_offset;

	while (offset < file_size_) {
		if (!Fill(offset))
			return false;
		if (phobos_log_find_evidence(log_env(), chunk_.data(), chunk_len_, chunk_start_,
					     bad_offset, at))
			return true;
		if (chunk_start_ + chunk_len_ >= file_size_)
			break;
		// Overlap by one header so a header across the chunk boundary is seen.
		offset = chunk_start_ + chunk_len_ - PHOBOS_LOG_HEADER_SIZE;
	}
	return false;
}

ScanStatus FileScanner::Next()
{
	uint64_t chunk_end = chunk_start_ + chunk_len_;

	if (pos_ < chunk_start_ || pos_ > chunk_end ||
	    (chunk_end - pos_ < PHOBOS_LOG_MAX_RECORD && chunk_end < file_size_)) {
		if (!Fill(pos_))
			return ScanStatus::kIoError;
		chunk_end = chunk_start_ + chunk_len_;
	}
	const bool at_eof = final_ && chunk_end >= file_size_;
	const size_t rel = static_cast<size_t>(pos_ - chunk_start_);

	phobos_log_scan_one(log_env(), chunk_.data() + rel, chunk_len_ - rel, pos_, expect_seq_,
			    at_eof, scratch_.data(), scratch_.size(), &scan_);
	switch (scan_.kind) {
	case PHOBOS_SCAN_RECORD:
		pos_ += scan_.size;
		expect_seq_ = scan_.rec.seq + 1;
		return ScanStatus::kRecord;
	case PHOBOS_SCAN_END:
		return ScanStatus::kEnd;
	case PHOBOS_SCAN_NEED_MORE:
		return ScanStatus::kNeedMore;
	default:
		break;
	}
	// Damaged record at pos_: judge the tail (docs/log-format.md, the torn-tail rule).
	uint64_t bad = pos_;
	phobos_scan damaged = scan_;
	uint64_t evidence = bad;
	bool proven = phobos_log_fault_is_proof(&damaged.fault) || FindEvidence(bad, &evidence);

	scan_ = damaged;
	if (io_errno_)
		return ScanStatus::kIoError;
	if (proven) {
		scan_.kind = PHOBOS_SCAN_CORRUPT;
		scan_.evidence = evidence;
		return ScanStatus::kCorrupt;
	}
	if (final_) {
		scan_.kind = PHOBOS_SCAN_TORN;
		return ScanStatus::kTorn;
	}
	return ScanStatus::kDamaged;
}

Napi::Object record_to_js(Napi::Env env, const phobos_rec &rec, uint64_t offset, uint64_t size)
{
	static const char *const types[] = {"unknown", "write", "zero", "sync-mark"};
	static const char *const codecs[] = {"none", "lz4", "zstd"};
	Napi::Object o = Napi::Object::New(env);

	o.Set("offset", Napi::Number::New(env, static_cast<double>(offset)));
	o.Set("size", Napi::Number::New(env, static_cast<double>(size)));
	o.Set("seq", Napi::Number::New(env, static_cast<double>(rec.seq)));
	o.Set("type", types[rec.type <= PHOBOS_REC_SYNC_MARK ? rec.type : 0]);
	o.Set("codec", codecs[rec.codec < PHOBOS_CODEC_COUNT ? rec.codec : 0]);
	o.Set("storedLength", Napi::Number::New(env, rec.stored_len));
	o.Set("length", Napi::Number::New(env, rec.length));
	o.Set("deviceOffset", Napi::Number::New(env, static_cast<double>(rec.dev_offset)));
	o.Set("stampNs", Napi::BigInt::New(env, static_cast<uint64_t>(rec.stamp_ns)));
	o.Set("syncedPosition", Napi::Number::New(env, static_cast<double>(rec.synced_pos)));
	o.Set("payloadCrc", Napi::Number::New(env, rec.payload_crc));
	return o;
}

Napi::Object fault_to_js(Napi::Env env, const phobos_scan &scan)
{
	Napi::Object o = Napi::Object::New(env);

	o.Set("offset", Napi::Number::New(env, static_cast<double>(scan.offset)));
	o.Set("code", fault_code(scan.fault.err));
	o.Set("reason", phobos_log_strerror(scan.fault.err));
	o.Set("got", Napi::BigInt::New(env, static_cast<uint64_t>(scan.fault.got)));
	o.Set("want", Napi::BigInt::New(env, static_cast<uint64_t>(scan.fault.want)));
	if (scan.kind == PHOBOS_SCAN_CORRUPT)
		o.Set("evidenceOffset", Napi::Number::New(env, static_cast<double>(scan.evidence)));
	return o;
}

}  // namespace phobos
