// SPDX-License-Identifier: GPL-2.0-only
/*
 * log_reader.cc - scanFile, scanBuffer, encodeRecords, replayLog.
 *
 * Every function returns a promise; the work runs on libuv's pool.
 */
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "codecs.h"
#include "io_util.h"
#include "log_file.h"
#include "napi_util.h"

namespace phobos {
namespace {

struct FileCloser {
	int fd = -1;
	~FileCloser()
	{
		if (fd >= 0)
			close(fd);
	}
};

bool file_size_of(int fd, uint64_t *size)
{
	off_t end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return false;
	*size = static_cast<uint64_t>(end);
	return true;
}

// What a walk over a log ended with, shared by scan and replay results.
struct WalkEnd {
	ScanStatus status = ScanStatus::kEnd;
	phobos_scan fault{};
	uint64_t position = 0;
	uint64_t next_seq = 0;
	uint64_t file_size = 0;
	bool limited = false;	// stopped by maxRecords or the `to` position
};

void set_walk_end(Napi::Env env, Napi::Object o, const WalkEnd &w)
{
	o.Set("status", w.limited ? "limit" : scan_status_name(w.status));
	o.Set("position", Napi::Number::New(env, static_cast<double>(w.position)));
	o.Set("nextSeq", Napi::Number::New(env, static_cast<double>(w.next_seq)));
	o.Set("fileSize", Napi::Number::New(env, static_cast<double>(w.file_size)));
	if (!w.limited && (w.status == ScanStatus::kTorn || w.status == ScanStatus::kCorrupt ||
			   w.status == ScanStatus::kDamaged))
		o.Set("fault", fault_to_js(env, w.fault));
}

struct RecordOut {
	phobos_rec rec;
	uint64_t offset;
	uint64_t size;
	std::vector<uint8_t> data;	// only when asked for
};

// ---- scanFile(path, {from, expectSeq, final, maxRecords, withData}) ----

class ScanFileWorker : public PromiseWorker {
public:
	ScanFileWorker(Napi::Env env, std::string path, uint64_t from, uint64_t expect_seq,
		       bool final, uint64_t max_records, bool with_data)
		: PromiseWorker(env), path_(std::move(path)), from_(from), expect_seq_(expect_seq),
		  final_(final), max_records_(max_records), with_data_(with_data)
	{
	}

	void Execute() override
	{
		FileCloser f;
		f.fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
		if (f.fd < 0 || !file_size_of(f.fd, &end_.file_size))
			return Fail(sys_message("open " + path_, errno), errno);
		FileScanner scanner(f.fd, end_.file_size, from_, expect_seq_, final_);
		for (;;) {
			if (records_.size() >= max_records_) {
				end_.limited = true;
				break;
			}
			ScanStatus s = scanner.Next();
			if (s == ScanStatus::kIoError)
				return Fail(sys_message("read " + path_, scanner.io_errno()),
					    scanner.io_errno());
			if (s != ScanStatus::kRecord) {
				end_.status = s;
				end_.fault = scanner.scan();
				break;
			}
			const phobos_scan &sc = scanner.scan();
			RecordOut r{sc.rec, sc.offset, sc.size, {}};
			if (with_data_ && sc.data)
				r.data.assign(sc.data, sc.data + sc.rec.length);
			records_.push_back(std::move(r));
		}
		end_.position = scanner.position();
		end_.next_seq = scanner.next_seq();
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Object o = Napi::Object::New(env);
		Napi::Array records = Napi::Array::New(env, records_.size());
		for (size_t i = 0; i < records_.size(); i++) {
			const RecordOut &r = records_[i];
			Napi::Object js = record_to_js(env, r.rec, r.offset, r.size);
			if (with_data_)
				js.Set("data", r.rec.type == PHOBOS_REC_WRITE
						       ? Napi::Buffer<uint8_t>::Copy(env, r.data.data(),
										      r.data.size())
						       : env.Null());
			records[i] = js;
		}
		o.Set("records", records);
		set_walk_end(env, o, end_);
		return o;
	}

private:
	std::string path_;
	uint64_t from_, expect_seq_;
	bool final_;
	uint64_t max_records_;
	bool with_data_;
	std::vector<RecordOut> records_;
	WalkEnd end_;
};

Napi::Value ScanFile(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path;
	uint64_t from, expect, max_records;
	Napi::Object opts = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>()
								      : Napi::Object::New(env);
	if (!arg_string(info, 0, "path", &path) || !opt_u64(env, opts, "from", 0, &from) ||
	    !opt_u64(env, opts, "expectSeq", 0, &expect) ||
	    !opt_u64(env, opts, "maxRecords", 100000, &max_records))
		return env.Undefined();
	auto *w = new ScanFileWorker(env, path, from, expect, opt_bool(opts, "final", true),
				     max_records, opt_bool(opts, "withData", false));
	return w->Start();
}

// ---- scanBuffer(buf, {base, expectSeq, atEof}) ----

class ScanBufferWorker : public PromiseWorker {
public:
	ScanBufferWorker(Napi::Env env, Napi::Uint8Array buf, uint64_t base, uint64_t expect_seq,
			 bool at_eof)
		: PromiseWorker(env), keep_(Napi::Persistent(buf)), data_(buf.Data()),
		  len_(buf.ByteLength()), base_(base), expect_seq_(expect_seq), at_eof_(at_eof),
		  scratch_(PHOBOS_LOG_MAX_LEN)
	{
	}

	void Execute() override
	{
		size_t pos = 0;
		uint64_t expect = expect_seq_;
		phobos_scan s;
		for (;;) {
			phobos_log_scan(log_env(), data_ + pos, len_ - pos, base_ + pos, expect, at_eof_,
					scratch_.data(), scratch_.size(), &s);
			if (s.kind != PHOBOS_SCAN_RECORD)
				break;
			records_.push_back({s.rec, s.offset, s.size, {}});
			pos += s.size;
			expect = s.rec.seq + 1;
		}
		static const ScanStatus map[] = {ScanStatus::kRecord, ScanStatus::kEnd,
						 ScanStatus::kNeedMore, ScanStatus::kDamaged,
						 ScanStatus::kTorn, ScanStatus::kCorrupt};
		end_.status = map[s.kind];
		end_.fault = s;
		end_.position = base_ + pos;
		end_.next_seq = expect;
		end_.file_size = base_ + len_;
		need_ = s.kind == PHOBOS_SCAN_NEED_MORE ? s.size : 0;
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Object o = Napi::Object::New(env);
		Napi::Array records = Napi::Array::New(env, records_.size());
		for (size_t i = 0; i < records_.size(); i++)
			records[i] = record_to_js(env, records_[i].rec, records_[i].offset,
						  records_[i].size);
		o.Set("records", records);
		set_walk_end(env, o, end_);
		if (need_)
			o.Set("needBytes", Napi::Number::New(env, static_cast<double>(need_)));
		return o;
	}

private:
	Napi::Reference<Napi::Uint8Array> keep_;
	const uint8_t *data_;
	size_t len_;
	uint64_t base_, expect_seq_;
	bool at_eof_;
	AlignedBuffer scratch_;
	std::vector<RecordOut> records_;
	WalkEnd end_;
	uint64_t need_ = 0;
};

Napi::Value ScanBuffer(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	Napi::Uint8Array buf;
	uint64_t base, expect;
	Napi::Object opts = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>()
								      : Napi::Object::New(env);
	if (!arg_buffer(info, 0, "buffer", &buf) || !opt_u64(env, opts, "base", 0, &base) ||
	    !opt_u64(env, opts, "expectSeq", 0, &expect))
		return env.Undefined();
	auto *w = new ScanBufferWorker(env, buf, base, expect, opt_bool(opts, "atEof", true));
	return w->Start();
}

// ---- encodeRecords([{type, deviceOffset, data|length, seq, stampNs, syncedPos}], codec) ----

struct EncodeInput {
	phobos_rec rec{};
	std::vector<uint8_t> data;
};

class EncodeWorker : public PromiseWorker {
public:
	EncodeWorker(Napi::Env env, std::vector<EncodeInput> in, unsigned codec)
		: PromiseWorker(env), in_(std::move(in)), codec_(codec)
	{
	}

	void Execute() override
	{
		for (EncodeInput &e : in_) {
			size_t at = out_.size(), n = 0;
			out_.resize(at + phobos_log_record_size(e.rec.length));
			int rc = phobos_log_encode(log_env(), &e.rec, e.data.data(), codec_,
						   out_.data() + at, out_.size() - at, &n);
			if (rc != PL_OK)
				return Fail(std::string("cannot encode record seq ") +
						    std::to_string(e.rec.seq) + ": " + phobos_log_strerror(rc),
					    "EPHOBOS_ARG");
			out_.resize(at + n);
		}
	}

	Napi::Value Result(Napi::Env env) override
	{
		return Napi::Buffer<uint8_t>::Copy(env, out_.data(), out_.size());
	}

private:
	std::vector<EncodeInput> in_;
	unsigned codec_;
	std::vector<uint8_t> out_;
};

Napi::Value EncodeRecords(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 1 || !info[0].IsArray())
		return throw_error(env, "records must be an array", "EPHOBOS_ARG");
	uint64_t codec = 0;
	if (info.Length() > 1 && !arg_u64(info, 1, "codec", &codec))
		return env.Undefined();
	Napi::Array arr = info[0].As<Napi::Array>();
	std::vector<EncodeInput> in(arr.Length());
	for (uint32_t i = 0; i < arr.Length(); i++) {
		Napi::Object o = arr.Get(i).As<Napi::Object>();
		EncodeInput &e = in[i];
		uint64_t type, dev, seq, stamp, synced, length;
		if (!opt_u64(env, o, "type", PHOBOS_REC_WRITE, &type) ||
		    !opt_u64(env, o, "deviceOffset", 0, &dev) || !opt_u64(env, o, "seq", 0, &seq) ||
		    !opt_u64(env, o, "stampNs", 0, &stamp) ||
		    !opt_u64(env, o, "syncedPos", 0, &synced) ||
		    !opt_u64(env, o, "length", 0, &length))
			return env.Undefined();
		Napi::Value data = o.Get("data");
		if (data.IsTypedArray()) {
			Napi::Uint8Array d = data.As<Napi::Uint8Array>();
			e.data.assign(d.Data(), d.Data() + d.ByteLength());
			length = d.ByteLength();
		}
		if (length > PHOBOS_LOG_MAX_LEN)
			return throw_error(env, "record length exceeds 4 MiB", "EPHOBOS_ARG");
		e.rec.type = static_cast<uint8_t>(type);
		e.rec.dev_offset = dev;
		e.rec.seq = seq;
		e.rec.stamp_ns = stamp;
		e.rec.synced_pos = synced;
		e.rec.length = static_cast<uint32_t>(length);
	}
	auto *w = new EncodeWorker(env, std::move(in), static_cast<unsigned>(codec));
	return w->Start();
}

// ---- replayLog(logPath, targetPath, {from, to, expectSeq, final, direct, create}) ----

// Writes records to the target in log order. In direct mode, contiguous writes are
// gathered in an aligned buffer and go out as large O_DIRECT writes when aligned; any
// unaligned piece goes through the buffered descriptor (Linux keeps the two coherent).
class TargetWriter {
public:
	static constexpr size_t kRunBytes = 4u << 20;

	TargetWriter(int fd, int direct_fd, bool is_block)
		: fd_(fd), direct_fd_(direct_fd), is_block_(is_block),
		  run_(direct_fd >= 0 ? kRunBytes : 0)
	{
	}

	int Write(uint64_t off, const uint8_t *data, size_t len)
	{
		if (direct_fd_ < 0)
			return WriteAll(fd_, data, len, off);
		if (run_len_ && (off != run_off_ + run_len_ || run_len_ + len > kRunBytes)) {
			int err = Flush();
			if (err)
				return err;
		}
		if (len > kRunBytes)
			return WriteAll(fd_, data, len, off);
		if (!run_len_)
			run_off_ = off;
		memcpy(run_.data() + run_len_, data, len);
		run_len_ += len;
		return 0;
	}

	int Zero(uint64_t off, uint64_t len)
	{
		int err = Flush();
		if (err)
			return err;
		if (is_block_) {
			uint64_t range[2] = {off, len};
			if ((off | len) % 512 == 0 && ioctl(fd_, BLKZEROOUT, range) == 0)
				return 0;
		} else if (fallocate(fd_, FALLOC_FL_ZERO_RANGE, static_cast<off_t>(off),
				     static_cast<off_t>(len)) == 0) {
			return 0;
		}
		static const uint8_t zeros[65536] = {};
		while (len) {
			size_t n = len < sizeof(zeros) ? static_cast<size_t>(len) : sizeof(zeros);
			if ((err = WriteAll(fd_, zeros, n, off)))
				return err;
			off += n;
			len -= n;
		}
		return 0;
	}

	int Flush()
	{
		if (!run_len_)
			return 0;
		bool aligned = run_off_ % 4096 == 0 && run_len_ % 4096 == 0;
		int err = WriteAll(aligned ? direct_fd_ : fd_, run_.data(), run_len_, run_off_);
		run_len_ = 0;
		return err;
	}

	int Sync()
	{
		int err = Flush();
		if (err)
			return err;
		if (fdatasync(fd_) != 0)
			return errno;
		if (direct_fd_ >= 0 && fdatasync(direct_fd_) != 0)
			return errno;
		return 0;
	}

private:
	static int WriteAll(int fd, const uint8_t *p, size_t len, uint64_t off)
	{
		return pwrite_all(fd, p, len, off);
	}

	int fd_, direct_fd_;
	bool is_block_;
	AlignedBuffer run_;
	uint64_t run_off_ = 0;
	size_t run_len_ = 0;
};

class ReplayWorker : public PromiseWorker {
public:
	ReplayWorker(Napi::Env env, std::string log, std::string target, uint64_t from,
		     uint64_t to, uint64_t expect_seq, bool final, std::string direct, bool create)
		: PromiseWorker(env), log_(std::move(log)), target_(std::move(target)), from_(from),
		  to_(to), expect_seq_(expect_seq), final_(final), direct_(std::move(direct)),
		  create_(create)
	{
	}

	void Execute() override
	{
		FileCloser logf, target, direct;
		struct stat st;

		logf.fd = open(log_.c_str(), O_RDONLY | O_CLOEXEC);
		if (logf.fd < 0 || !file_size_of(logf.fd, &end_.file_size))
			return Fail(sys_message("open log " + log_, errno), errno);
		target.fd = open(target_.c_str(), O_WRONLY | O_CLOEXEC | (create_ ? O_CREAT : 0), 0644);
		if (target.fd < 0 || fstat(target.fd, &st) != 0)
			return Fail(sys_message("open target " + target_, errno), errno);
		bool is_block = S_ISBLK(st.st_mode);
		if (direct_ == "on" || (direct_ == "auto" && is_block)) {
			direct.fd = open(target_.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT);
			if (direct.fd < 0 && direct_ == "on")
				return Fail(sys_message("open target " + target_ + " with O_DIRECT", errno),
					    errno);
		}
		used_direct_ = direct.fd >= 0;

		TargetWriter out(target.fd, direct.fd, is_block);
		FileScanner scanner(logf.fd, end_.file_size, from_, expect_seq_, final_);
		for (;;) {
			ScanStatus s = scanner.Next();
			if (s == ScanStatus::kIoError)
				return Fail(sys_message("read log " + log_, scanner.io_errno()),
					    scanner.io_errno());
			if (s != ScanStatus::kRecord) {
				end_.status = s;
				end_.fault = scanner.scan();
				end_.position = scanner.position();
				end_.next_seq = scanner.next_seq();
				break;
			}
			const phobos_scan &sc = scanner.scan();
			if (to_ && sc.offset + sc.size > to_) {
				end_.limited = true;
				end_.position = sc.offset;
				end_.next_seq = sc.rec.seq;
				break;
			}
			int err = Apply(&out, sc);
			if (err)
				return Fail(sys_message("write target " + target_, err), err);
			end_.position = scanner.position();
			end_.next_seq = scanner.next_seq();
		}
		int err = out.Sync();
		if (err)
			return Fail(sys_message("sync target " + target_, err), err);
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Object o = Napi::Object::New(env);
		o.Set("records", Napi::Number::New(env, static_cast<double>(records_)));
		o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes_)));
		o.Set("direct", Napi::Boolean::New(env, used_direct_));
		set_walk_end(env, o, end_);
		return o;
	}

private:
	int Apply(TargetWriter *out, const phobos_scan &sc)
	{
		int err = 0;
		if (sc.rec.type == PHOBOS_REC_WRITE)
			err = out->Write(sc.rec.dev_offset, sc.data, sc.rec.length);
		else if (sc.rec.type == PHOBOS_REC_ZERO)
			err = out->Zero(sc.rec.dev_offset, sc.rec.length);
		if (!err && sc.rec.type != PHOBOS_REC_SYNC_MARK) {
			records_++;
			bytes_ += sc.rec.length;
		}
		return err;
	}

	std::string log_, target_;
	uint64_t from_, to_, expect_seq_;
	bool final_;
	std::string direct_;
	bool create_;
	bool used_direct_ = false;
	uint64_t records_ = 0, bytes_ = 0;
	WalkEnd end_;
};

Napi::Value ReplayLog(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string log, target;
	uint64_t from, to, expect;
	Napi::Object opts = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>()
								      : Napi::Object::New(env);
	if (!arg_string(info, 0, "logPath", &log) || !arg_string(info, 1, "targetPath", &target) ||
	    !opt_u64(env, opts, "from", 0, &from) || !opt_u64(env, opts, "to", 0, &to) ||
	    !opt_u64(env, opts, "expectSeq", 0, &expect))
		return env.Undefined();
	std::string direct = opt_string(opts, "direct", "auto");
	if (direct != "auto" && direct != "on" && direct != "off")
		return throw_error(env, "direct must be 'auto', 'on' or 'off'", "EPHOBOS_ARG");
	auto *w = new ReplayWorker(env, log, target, from, to, expect, opt_bool(opts, "final", true),
				   direct, opt_bool(opts, "create", false));
	return w->Start();
}

}  // namespace

void register_log_reader(Napi::Env env, Napi::Object exports)
{
	exports.Set("scanFile", Napi::Function::New(env, ScanFile));
	exports.Set("scanBuffer", Napi::Function::New(env, ScanBuffer));
	exports.Set("encodeRecords", Napi::Function::New(env, EncodeRecords));
	exports.Set("replayLog", Napi::Function::New(env, ReplayLog));
}

}  // namespace phobos
