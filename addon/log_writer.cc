// SPDX-License-Identifier: GPL-2.0-only
/*
 * log_writer.cc - LogWriter: appends records to one log file with group commit.
 *
 * JS calls append() for each write; the call queues the item and returns a promise.
 * One writer thread per log takes everything queued, encodes it (crc32c, optional
 * compression), writes it with one pwritev() and, if anything in the batch asked for
 * durability, calls fdatasync() once. Then every item of the batch is settled on the main
 * thread. So many concurrent durable writes cost one fdatasync (group commit), and
 * non-durable writes (the completion rule's plain writes) settle once in the page cache.
 *
 * Payloads are not copied: an item keeps a reference to the caller's buffer until it is
 * settled, and pwritev() reads straight from it. Callers must not modify a buffer before
 * its append settles.
 *
 * Threads: the main thread owns JS objects (deferreds, references) and only ever pushes
 * to State::queue under State::lock. The writer thread owns the fd and the file position.
 * Items move main -> queue -> writer -> TSFN -> main, and are destroyed on main.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "codecs.h"
#include "log_file.h"
#include "napi_util.h"

namespace phobos {
namespace {

// One batch is at most this many records (3 iovecs each stays under IOV_MAX = 1024)
// or this many bytes, so a burst cannot delay the first writes' completion for long.
constexpr size_t kBatchRecords = 256;
constexpr size_t kBatchBytes = 16u << 20;

enum class ItemKind { kAppend, kSync, kClose };

struct Item {
	ItemKind kind;
	phobos_rec rec{};
	const uint8_t *data = nullptr;	// WRITE payload, in the referenced JS buffer
	bool durable = false;
	bool seal = false;		// kClose: append a SYNC_MARK first
	// Main thread only:
	std::unique_ptr<Napi::Reference<Napi::Uint8Array>> keep;
	std::unique_ptr<Napi::Promise::Deferred> deferred;
	// Filled by the writer thread:
	uint64_t position = 0;		// log offset of the record
	uint64_t end = 0;		// log offset after it
	int err = 0;
	std::string error;
	// Encoding scratch (writer thread):
	uint8_t header[PHOBOS_LOG_HEADER_SIZE];
	std::vector<uint8_t> encoded;	// whole record when compressed
};
using ItemPtr = std::unique_ptr<Item>;

struct State {
	std::string path;
	unsigned codec = PHOBOS_CODEC_NONE;
	int fd = -1;

	std::mutex lock;	// protects queue and stopping
	std::condition_variable wake;
	std::deque<ItemPtr> queue;
	bool stopping = false;
	// The writer thread sleeps on `wake`; pushers notify only then (a notify is a futex
	// syscall, and under load the writer is busy and will find the item anyway).
	bool writer_waiting = false;

	// Written by the writer thread, read anywhere.
	std::atomic<uint64_t> position{0};	// end of the written log
	std::atomic<uint64_t> synced{0};	// end of the durable log
	std::atomic<uint64_t> next_seq{1};
	std::atomic<uint64_t> syncs{0};		// fdatasync calls made, for metrics and tests
	std::atomic<int> failed{0};		// errno that broke the writer, sticky
	std::string failure;			// message for failed (set before failed)

	~State()
	{
		// Normally joined on close; if the environment went away first, the thread may
		// itself drop the last reference, and joining itself is impossible.
		if (thread.joinable())
			thread.detach();
		if (fd >= 0)
			close(fd);
	}

	// Main thread only.
	Napi::ThreadSafeFunction tsfn;
	std::thread thread;
	size_t inflight = 0;
	bool open = false;
	bool closing = false;
};

struct Batch {
	std::shared_ptr<State> state;
	std::vector<ItemPtr> items;
	bool closed = false;
};

// ---- writer thread ----

int write_fully(int fd, std::vector<iovec> &iov, uint64_t offset)
{
	size_t first = 0;
	while (first < iov.size()) {
		size_t count = iov.size() - first;
		if (count > 1024)
			count = 1024;
		ssize_t n = pwritev(fd, &iov[first], static_cast<int>(count), static_cast<off_t>(offset));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return ENOSPC;
		offset += static_cast<uint64_t>(n);
		size_t left = static_cast<size_t>(n);
		while (left && first < iov.size()) {
			if (left >= iov[first].iov_len) {
				left -= iov[first].iov_len;
				first++;
			} else {
				iov[first].iov_base = static_cast<uint8_t *>(iov[first].iov_base) + left;
				iov[first].iov_len -= left;
				left = 0;
			}
		}
	}
	return 0;
}

// Encode one record at the current end of the log; add its pieces to iov.
void encode_item(State &st, Item &it, uint64_t *pos, std::vector<iovec> *iov)
{
	static const uint8_t zero_pad[PHOBOS_LOG_ALIGN] = {};
	const phobos_log_env *env = log_env();

	it.rec.seq = st.next_seq.load();
	it.rec.synced_pos = st.synced.load();
	it.position = *pos;
	if (it.rec.type == PHOBOS_REC_WRITE && st.codec != PHOBOS_CODEC_NONE) {
		size_t n = 0;
		it.encoded.resize(phobos_log_record_size(it.rec.length));
		phobos_log_encode(env, &it.rec, it.data, st.codec, it.encoded.data(), it.encoded.size(),
				  &n);
		it.encoded.resize(n);
		iov->push_back({it.encoded.data(), n});
	} else {
		if (it.rec.type == PHOBOS_REC_WRITE)
			it.rec.payload_crc = env->crc32c(0, it.data, it.rec.length);
		phobos_log_encode_header(env, &it.rec, it.header);
		iov->push_back({it.header, PHOBOS_LOG_HEADER_SIZE});
		if (it.rec.type == PHOBOS_REC_WRITE) {
			iov->push_back({const_cast<uint8_t *>(it.data), it.rec.length});
			size_t pad = phobos_log_record_size(it.rec.length) - PHOBOS_LOG_HEADER_SIZE -
				     it.rec.length;
			if (pad)
				iov->push_back({const_cast<uint8_t *>(zero_pad), pad});
		}
	}
	*pos += phobos_log_record_size(it.rec.stored_len);
	it.end = *pos;
	st.next_seq.store(it.rec.seq + 1);
}

void fail_batch(State &st, std::vector<ItemPtr> &items, int err, const std::string &message)
{
	if (!st.failed.load()) {
		st.failure = message;
		st.failed.store(err);
	}
	for (ItemPtr &it : items) {
		it->err = st.failed.load();
		it->error = st.failure;
	}
}

// Write one batch; returns true if it contained the close request.
bool process_batch(State &st, std::vector<ItemPtr> &items)
{
	bool need_sync = false, closing = false, seal = false;
	uint64_t start = st.position.load(), pos = start;
	uint64_t seq_before = st.next_seq.load();
	std::vector<iovec> iov;
	ItemPtr mark;

	for (ItemPtr &it : items) {
		if (it->kind == ItemKind::kClose) {
			closing = true;
			seal = it->seal;
		}
		need_sync |= it->durable || it->kind != ItemKind::kAppend;
	}
	if (st.failed.load()) {
		fail_batch(st, items, st.failed.load(), st.failure);
	} else {
		for (ItemPtr &it : items)
			if (it->kind == ItemKind::kAppend)
				encode_item(st, *it, &pos, &iov);
		if (seal && !iov.empty()) {
			// The SYNC_MARK must vouch for this batch too: sync before writing it.
			need_sync = true;
		}
		int err = iov.empty() ? 0 : write_fully(st.fd, iov, start);
		if (!err && need_sync) {
			st.syncs++;
			if (fdatasync(st.fd) != 0)
				err = errno;
		}
		if (!err && seal) {
			mark = std::make_unique<Item>();
			mark->kind = ItemKind::kAppend;
			mark->rec.type = PHOBOS_REC_SYNC_MARK;
			st.synced.store(pos);
			std::vector<iovec> mark_iov;
			encode_item(st, *mark, &pos, &mark_iov);
			err = write_fully(st.fd, mark_iov, mark->position);
			if (!err && fdatasync(st.fd) != 0)
				err = errno;
		}
		if (err) {
			// Leave no partial record behind: cut the file back to the last good end.
			if (ftruncate(st.fd, static_cast<off_t>(start)) == 0)
				pos = start;
			st.next_seq.store(seq_before);
			fail_batch(st, items, err, sys_message("append to " + st.path, err));
		} else {
			st.position.store(pos);
			if (need_sync)
				st.synced.store(pos);
		}
	}
	for (ItemPtr &it : items)
		if (it->kind != ItemKind::kAppend)
			it->position = it->end = st.position.load();
	if (closing) {
		close(st.fd);
		st.fd = -1;
	}
	return closing;
}

void writer_main(std::shared_ptr<State> st)
{
	for (;;) {
		auto batch = new Batch();
		batch->state = st;
		{
			std::unique_lock<std::mutex> guard(st->lock);
			st->writer_waiting = true;
			st->wake.wait(guard, [&] { return !st->queue.empty(); });
			st->writer_waiting = false;
			size_t bytes = 0;
			while (!st->queue.empty() && batch->items.size() < kBatchRecords &&
			       bytes < kBatchBytes) {
				bytes += st->queue.front()->rec.length;
				bool is_close = st->queue.front()->kind == ItemKind::kClose;
				batch->items.push_back(std::move(st->queue.front()));
				st->queue.pop_front();
				if (is_close)
					break;
			}
		}
		batch->closed = process_batch(*st, batch->items);
		bool closed = batch->closed;
		napi_status delivered = st->tsfn.BlockingCall(batch, [](Napi::Env env, Napi::Function, Batch *b) {
			std::unique_ptr<Batch> owned(b);
			State &s = *b->state;
			for (ItemPtr &it : b->items) {
				Napi::HandleScope scope(env);
				if (!it->deferred)
					continue;	// the close a finalizer queued
				if (it->err) {
					Napi::Error e = Napi::Error::New(env, it->error);
					e.Set("code", errno_name(it->err));
					it->deferred->Reject(e.Value());
				} else {
					Napi::Object o = Napi::Object::New(env);
					o.Set("seq", Napi::Number::New(env, static_cast<double>(it->rec.seq)));
					o.Set("position", Napi::Number::New(env, static_cast<double>(it->position)));
					o.Set("end", Napi::Number::New(env, static_cast<double>(it->end)));
					o.Set("stored", Napi::Number::New(env, it->rec.stored_len));
					it->deferred->Resolve(o);
				}
				it->keep.reset();
				s.inflight--;
			}
			if (b->closed) {
				s.thread.join();
				s.tsfn.Release();
				s.open = false;
			} else if (s.inflight == 0) {
				s.tsfn.Unref(env);
			}
		});
		if (delivered != napi_ok) {
			// The JS environment is shutting down: nobody can be told, and JS handles must
			// not be touched from here. Leak the batch and stop.
			for (ItemPtr &it : batch->items)
				(void)it.release();
			return;
		}
		if (closed)
			return;
	}
}

// ---- open: scan the existing log, cut a torn tail ----

class OpenWorker : public PromiseWorker {
public:
	OpenWorker(Napi::Env env, std::shared_ptr<State> st, Napi::Object self)
		: PromiseWorker(env), st_(std::move(st)), self_(Napi::Persistent(self))
	{
	}

	void Execute() override
	{
		State &st = *st_;
		st.fd = open(st.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (st.fd < 0)
			return Fail(sys_message("open log " + st.path, errno), errno);
		off_t size = lseek(st.fd, 0, SEEK_END);
		FileScanner scanner(st.fd, static_cast<uint64_t>(size), 0, 1, true);
		ScanStatus s;
		while ((s = scanner.Next()) == ScanStatus::kRecord)
			records_++;
		if (s == ScanStatus::kIoError)
			return Fail(sys_message("read log " + st.path, scanner.io_errno()),
				    scanner.io_errno());
		if (s == ScanStatus::kCorrupt) {
			const phobos_scan &sc = scanner.scan();
			return Fail(st.path + ": corruption at offset " + std::to_string(sc.offset) + ": " +
					    phobos_log_strerror(sc.fault.err) +
					    "; refusing to append (run marsadm log-check " + st.path + ")",
				    "EPHOBOS_CORRUPT");
		}
		uint64_t end = scanner.position();
		if (s == ScanStatus::kTorn) {
			truncated_ = static_cast<uint64_t>(size) - end;
			if (ftruncate(st.fd, static_cast<off_t>(end)) != 0 || fdatasync(st.fd) != 0)
				return Fail(sys_message("truncate torn tail of " + st.path, errno), errno);
		}
		st.position.store(end);
		st.synced.store(end);	// everything we kept was read back from the file
		st.next_seq.store(scanner.next_seq());
	}

	Napi::Value Result(Napi::Env env) override
	{
		State &st = *st_;
		st.tsfn = Napi::ThreadSafeFunction::New(
			env, Napi::Function::New(env, [](const Napi::CallbackInfo &) {}),
			"phobos-log-writer", 0, 1);
		st.tsfn.Unref(env);
		st.thread = std::thread(writer_main, st_);
		st.open = true;
		Napi::Object o = Napi::Object::New(env);
		o.Set("position", Napi::Number::New(env, static_cast<double>(st.position.load())));
		o.Set("nextSeq", Napi::Number::New(env, static_cast<double>(st.next_seq.load())));
		o.Set("records", Napi::Number::New(env, static_cast<double>(records_)));
		o.Set("truncatedBytes", Napi::Number::New(env, static_cast<double>(truncated_)));
		return o;
	}

	void OnError(const Napi::Error &e) override
	{
		if (st_->fd >= 0) {
			close(st_->fd);
			st_->fd = -1;
		}
		PromiseWorker::OnError(e);
	}

private:
	std::shared_ptr<State> st_;
	Napi::ObjectReference self_;	// keeps the JS writer alive while opening
	uint64_t records_ = 0, truncated_ = 0;
};

// ---- the JS class ----

class LogWriter : public Napi::ObjectWrap<LogWriter> {
public:
	static Napi::Function Define(Napi::Env env)
	{
		return DefineClass(
			env, "LogWriter",
			{
				InstanceMethod<&LogWriter::Open>("open"),
				InstanceMethod<&LogWriter::Append>("append"),
				InstanceMethod<&LogWriter::Sync>("sync"),
				InstanceMethod<&LogWriter::Close>("close"),
				InstanceAccessor<&LogWriter::Position>("position"),
				InstanceAccessor<&LogWriter::Synced>("syncedPosition"),
				InstanceAccessor<&LogWriter::NextSeq>("nextSeq"),
				InstanceAccessor<&LogWriter::Syncs>("syncs"),
			});
	}

	// new LogWriter(path, codec)
	explicit LogWriter(const Napi::CallbackInfo &info) : Napi::ObjectWrap<LogWriter>(info)
	{
		st_ = std::make_shared<State>();
		uint64_t codec = 0;
		if (!arg_string(info, 0, "path", &st_->path))
			return;
		if (info.Length() > 1 && !arg_u64(info, 1, "codec", &codec))
			return;
		if (codec >= PHOBOS_CODEC_COUNT) {
			throw_error(info.Env(), "unknown codec " + std::to_string(codec), "EPHOBOS_ARG");
			return;
		}
		st_->codec = static_cast<unsigned>(codec);
	}

	~LogWriter() override
	{
		// Collected while open: let the thread finish what is queued, then stop.
		// No JS may run in a finalizer, so this close settles nothing.
		if (st_ && st_->open && !st_->closing) {
			auto it = std::make_unique<Item>();
			it->kind = ItemKind::kClose;
			it->seal = true;
			st_->closing = true;
			std::lock_guard<std::mutex> guard(st_->lock);
			st_->queue.push_back(std::move(it));
			st_->wake.notify_one();	// rare (finalizer): always wake
		}
	}

private:
	Napi::Value Open(const Napi::CallbackInfo &info)
	{
		if (st_->open || st_->fd >= 0)
			return throw_error(info.Env(), "log writer for " + st_->path + " is already open",
					   "EPHOBOS_STATE");
		return (new OpenWorker(info.Env(), st_, info.This().As<Napi::Object>()))->Start();
	}

	Napi::Value CheckUsable(Napi::Env env)
	{
		if (!st_->open || st_->closing)
			return throw_error(env, "log writer for " + st_->path + " is not open",
					   "EPHOBOS_STATE");
		return Napi::Value();
	}

	// append(deviceOffset, data: Uint8Array | null, length, stampNs, durable)
	Napi::Value Append(const Napi::CallbackInfo &info)
	{
		Napi::Env env = info.Env();
		if (!CheckUsable(env).IsEmpty())
			return env.Undefined();
		auto it = std::make_unique<Item>();
		uint64_t dev = 0, length = 0, stamp = 0;
		if (!arg_u64(info, 0, "deviceOffset", &dev) || !arg_u64(info, 2, "length", &length) ||
		    !arg_u64(info, 3, "stampNs", &stamp))
			return env.Undefined();
		it->rec.type = PHOBOS_REC_ZERO;
		if (info[1].IsTypedArray()) {
			Napi::Uint8Array data;
			if (!arg_buffer(info, 1, "data", &data))
				return env.Undefined();
			it->rec.type = PHOBOS_REC_WRITE;
			it->data = data.Data();
			length = data.ByteLength();
			it->keep = std::make_unique<Napi::Reference<Napi::Uint8Array>>(
				Napi::Persistent(data));
		}
		if (length == 0 || length > PHOBOS_LOG_MAX_LEN)
			return throw_error(env, "record length " + std::to_string(length) +
						       " out of range 1.." + std::to_string(PHOBOS_LOG_MAX_LEN),
					   "EPHOBOS_ARG");
		if (dev + length < dev)
			return throw_error(env, "device range overflows", "EPHOBOS_ARG");
		it->rec.dev_offset = dev;
		it->rec.length = static_cast<uint32_t>(length);
		it->rec.stamp_ns = stamp;
		it->durable = info.Length() > 4 && info[4].ToBoolean().Value();
		return Push(std::move(it), ItemKind::kAppend);
	}

	Napi::Value Sync(const Napi::CallbackInfo &info)
	{
		if (!CheckUsable(info.Env()).IsEmpty())
			return info.Env().Undefined();
		return Push(std::make_unique<Item>(), ItemKind::kSync);
	}

	// close(seal = true): settle everything queued, append a SYNC_MARK, sync, close.
	Napi::Value Close(const Napi::CallbackInfo &info)
	{
		if (!CheckUsable(info.Env()).IsEmpty())
			return info.Env().Undefined();
		auto it = std::make_unique<Item>();
		it->seal = info.Length() < 1 || info[0].ToBoolean().Value();
		Napi::Value p = Push(std::move(it), ItemKind::kClose);
		st_->closing = true;
		return p;
	}

	Napi::Value Push(ItemPtr it, ItemKind kind)
	{
		Napi::Env env = Env();
		it->kind = kind;
		it->deferred = std::make_unique<Napi::Promise::Deferred>(env);
		Napi::Promise promise = it->deferred->Promise();
		if (st_->inflight++ == 0)
			st_->tsfn.Ref(env);
		bool wake;
		{
			std::lock_guard<std::mutex> guard(st_->lock);
			st_->queue.push_back(std::move(it));
			wake = st_->writer_waiting;
		}
		if (wake)
			st_->wake.notify_one();
		return promise;
	}

	Napi::Value Position(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(st_->position.load()));
	}
	Napi::Value Synced(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(st_->synced.load()));
	}
	Napi::Value Syncs(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(st_->syncs.load()));
	}
	Napi::Value NextSeq(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), static_cast<double>(st_->next_seq.load()));
	}

	std::shared_ptr<State> st_;
};

}  // namespace

void register_log_writer(Napi::Env env, Napi::Object exports)
{
	exports.Set("LogWriter", LogWriter::Define(env));
}

}  // namespace phobos
