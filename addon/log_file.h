// SPDX-License-Identifier: GPL-2.0-only
/*
 * log_file.h - walking a log file on disk with the format core.
 *
 * FileScanner reads a log in large chunks and yields verified records one by one; at the
 * first damaged record it applies the torn-tail rule of docs/log-format.md over the
 * rest of the file. Used by LogWriter (reopen), scanFile (log-check, log-cat) and the
 * replayer. Runs on worker threads only.
 */
#ifndef PHOBOS_ADDON_LOG_FILE_H
#define PHOBOS_ADDON_LOG_FILE_H

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

extern "C" {
#include "../kernel/common/phobos_log.h"
}

namespace phobos {

// A heap buffer aligned for O_DIRECT.
class AlignedBuffer {
public:
	explicit AlignedBuffer(size_t size);
	~AlignedBuffer();
	AlignedBuffer(const AlignedBuffer &) = delete;
	AlignedBuffer &operator=(const AlignedBuffer &) = delete;
	uint8_t *data() { return data_; }
	size_t size() const { return size_; }

private:
	uint8_t *data_;
	size_t size_;
};

enum class ScanStatus {
	kRecord,	// scan() holds a verified record
	kEnd,		// clean end of the log
	kNeedMore,	// the file ends inside a record and may still grow
	kTorn,		// torn tail at scan().offset
	kCorrupt,	// corruption at scan().offset
	kDamaged,	// damaged record, file not final and no evidence yet
	kIoError,	// read failed: io_errno()
};

const char *scan_status_name(ScanStatus s);
// Stable code for a phobos_log_err, e.g. "payload-crc".
const char *fault_code(int err);

class FileScanner {
public:
	// final: the end of the file is the end of the log (no writer is appending).
	FileScanner(int fd, uint64_t file_size, uint64_t from, uint64_t expect_seq, bool final);

	ScanStatus Next();
	const phobos_scan &scan() const { return scan_; }
	uint64_t position() const { return pos_; }	// offset of the next record
	uint64_t next_seq() const { return expect_seq_; }	// 0 if unknown
	int io_errno() const { return io_errno_; }

private:
	bool Fill(uint64_t offset);
	bool FindEvidence(uint64_t bad_offset, uint64_t *at);

	int fd_;
	uint64_t file_size_;
	uint64_t pos_;
	uint64_t expect_seq_;
	bool final_;
	AlignedBuffer chunk_;
	AlignedBuffer scratch_;
	uint64_t chunk_start_ = 0;
	size_t chunk_len_ = 0;
	phobos_scan scan_{};
	int io_errno_ = 0;
};

// JS shapes shared by the reader and the writer.
Napi::Object record_to_js(Napi::Env env, const phobos_rec &rec, uint64_t offset, uint64_t size);
Napi::Object fault_to_js(Napi::Env env, const phobos_scan &scan);

}  // namespace phobos

#endif
