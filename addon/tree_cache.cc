// SPDX-License-Identifier: GPL-2.0-only
/*
 * tree_cache.cc - every value of a /mars tree from a cache checked against directory
 * versions, for views (docs/tree.md "View cache").
 *
 * A view reads every link of the tree, three syscalls per directory and one per link
 * (~9000 links in ~3000 directories at 1000 resources). Every tree write renames into
 * its directory, which moves that directory's mtime and ctime, and a symlink's target
 * cannot change without a new directory entry. So the links of a directory whose
 * version (inode, mtime, ctime) equals the one it had before it was last listed are the
 * ones listed then. Here one fstatat per directory decides that; only directories that
 * moved are listed again, and the cache is rewritten if anything differed.
 *
 * A version counts only if the directory had been quiet for settle_ns when it was listed:
 * a change within the same timestamp granule would not move it. Stamps are not cached
 * (lutimes moves no directory); a caller that needs them walks the tree.
 *
 * The cache is private to this file and to one host: native byte order, no fsync (a torn
 * or stale-format file fails its checks and is rebuilt). It is trusted only if it is a
 * regular file owned by the caller's effective uid and writable by no one else.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crc32c.h"
#include "io_util.h"
#include "napi_util.h"
#include "tree_walk.h"

namespace phobos {
namespace {

constexpr char kMagic[4] = {'P', 'H', 'V', 'C'};
constexpr uint32_t kFormat = 1;
constexpr size_t kHeaderBytes = 24;	// magic, format, payload length (u64), crc32c, zero
constexpr uint64_t kMaxCacheBytes = 256u << 20;

using Text = std::string_view;

struct Entry {
	Text key, value;
	bool operator==(const Entry &o) const { return key == o.key && value == o.value; }
};

// Length-prefixed fields, appended to a growing payload.
class Writer {
public:
	void u32(uint32_t v) { bytes_.append(reinterpret_cast<const char *>(&v), sizeof(v)); }
	void str(Text s)
	{
		u32(static_cast<uint32_t>(s.size()));
		bytes_.append(s);
	}
	const std::string &bytes() const { return bytes_; }

private:
	std::string bytes_;
};

// The same fields read back as views into the file; every read checks the bounds, and
// ok() stays false after the first one that ran past the end.
class Reader {
public:
	Reader(const char *p, size_t n) : p_(p), end_(p + n) {}
	uint32_t u32()
	{
		uint32_t v = 0;
		if (take(sizeof(v)))
			std::memcpy(&v, p_ - sizeof(v), sizeof(v));
		return v;
	}
	Text str()
	{
		uint32_t n = u32();
		return take(n) ? Text(p_ - n, n) : Text();
	}
	bool ok() const { return ok_; }
	bool at_end() const { return p_ == end_; }
	const char *at() const { return p_; }

private:
	bool take(size_t n)
	{
		if (!ok_ || static_cast<size_t>(end_ - p_) < n)
			return ok_ = false;
		p_ += n;
		return true;
	}
	const char *p_, *end_;
	bool ok_ = true;
};

// One directory's record in the cache: its version ('' when it was too recent to trust
// when listed) and where its subdirectories and links start (Reader::at()).
struct Cached {
	Text version;
	const char *rest;
};

// The cache file, mapped read-only; its records indexed by directory key. A file that is
// not one the caller may trust, or fails a check, leaves the index empty.
class CacheFile {
public:
	CacheFile(const std::string &path, const std::string &root) { load(path, root); }
	~CacheFile()
	{
		if (map_ != MAP_FAILED)
			munmap(map_, size_);
	}
	CacheFile(const CacheFile &) = delete;
	CacheFile &operator=(const CacheFile &) = delete;

	bool valid() const { return valid_; }
	size_t size() const { return index_.size(); }
	const Cached *find(Text key) const
	{
		auto it = index_.find(key);
		return it == index_.end() ? nullptr : &it->second;
	}
	// The subdirectories and links of a record, appended to the lists given.
	void read(const Cached &c, std::vector<Text> *subdirs, std::vector<Entry> *links) const
	{
		Reader r(c.rest, static_cast<const char *>(map_) + size_ - c.rest);
		for (uint32_t k = r.u32(); k > 0; k--)
			subdirs->push_back(r.str());
		for (uint32_t k = r.u32(); k > 0; k--) {
			Text key = r.str();
			links->push_back(Entry{key, r.str()});
		}
	}

private:
	void load(const std::string &path, const std::string &root)
	{
		int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return;
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
		    (st.st_mode & (S_IWGRP | S_IWOTH)) == 0 && st.st_size >= static_cast<off_t>(kHeaderBytes) &&
		    static_cast<uint64_t>(st.st_size) <= kMaxCacheBytes) {
			size_ = static_cast<size_t>(st.st_size);
			// MAP_POPULATE: one call maps every page, instead of a fault per page
			// (expensive in a VM).
			map_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		}
		close(fd);
		if (map_ != MAP_FAILED)
			valid_ = index(root);
		if (!valid_)
			index_.clear();
	}

	bool index(const std::string &root)
	{
		const char *data = static_cast<const char *>(map_);
		uint32_t format, crc;
		uint64_t length;
		std::memcpy(&format, data + 4, 4);
		std::memcpy(&length, data + 8, 8);
		std::memcpy(&crc, data + 16, 4);
		const char *payload = data + kHeaderBytes;
		if (std::memcmp(data, kMagic, sizeof(kMagic)) != 0 || format != kFormat ||
		    length != size_ - kHeaderBytes || phobos_crc32c(0, payload, length) != crc)
			return false;
		Reader r(payload, length);
		if (r.str() != root)
			return false;
		uint32_t dirs = r.u32();
		index_.reserve(std::min<uint64_t>(dirs, length / 16));	// a record takes >= 16 bytes
		for (uint32_t n = dirs; r.ok() && n > 0; n--) {
			Text key = r.str();
			Text version = r.str();
			index_[key] = Cached{version, r.at()};
			for (uint32_t k = r.u32(); r.ok() && k > 0; k--)
				r.str();
			for (uint32_t k = r.u32(); r.ok() && k > 0; k--) {
				r.str();
				r.str();
			}
		}
		return r.ok() && r.at_end();
	}

	void *map_ = MAP_FAILED;
	size_t size_ = 0;
	bool valid_ = false;
	std::unordered_map<Text, Cached> index_;
};

// A directory of the tree as this read found it. Its subdirectories are the entries
// [child_begin, child_end) of the breadth-first list, its links [link_begin, link_end).
struct Dir {
	Text key;
	Text version;
	size_t child_begin = 0, child_end = 0;
	size_t link_begin = 0, link_end = 0;
	bool gone = false;	// vanished (or stopped being a directory) since its parent was listed
};

class CachedValuesWorker : public PromiseWorker {
public:
	CachedValuesWorker(Napi::Env env, std::string root, std::string cache_path, int64_t settle_ns)
		: PromiseWorker(env), root_(std::move(root)), cache_path_(std::move(cache_path)),
		  settle_ns_(settle_ns)
	{
	}

	void Execute() override
	{
		cache_ = std::make_unique<CacheFile>(cache_path_, root_);
		int rootfd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				return;	// nothing there: no links
			return Fail(sys_message("open " + root_, errno), errno);
		}
		// Breadth first from the root; a directory's subdirectories come from its
		// listing, cached or new, so a new directory is found through its parent,
		// whose version its creation moved.
		bool changed = !cache_->valid();
		size_t live = 0;
		dirs_.push_back(Dir{});
		std::vector<Text> subdirs;
		for (size_t i = 0; i < dirs_.size(); i++) {
			subdirs.clear();
			Source from = refresh(rootfd, &dirs_[i], &subdirs);
			changed = changed || from == kGone || from == kListedChanged;
			if (from == kGone)
				continue;
			live++;
			dirs_[i].child_begin = dirs_.size();
			for (Text sub : subdirs)
				dirs_.push_back(Dir{sub, {}});
			dirs_[i].child_end = dirs_.size();
		}
		close(rootfd);
		if (changed || cache_->size() != live)
			written_ = store();
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Array keys = Napi::Array::New(env, links_.size());
		Napi::Array values = Napi::Array::New(env, links_.size());
		for (size_t i = 0; i < links_.size(); i++) {
			keys[i] = Napi::String::New(env, links_[i].key.data(), links_[i].key.size());
			values[i] = Napi::String::New(env, links_[i].value.data(), links_[i].value.size());
		}
		Napi::Object o = Napi::Object::New(env);
		o.Set("keys", keys);
		o.Set("values", values);
		o.Set("dirs", Napi::Number::New(env, static_cast<double>(dirs_.size())));
		o.Set("reread", Napi::Number::New(env, static_cast<double>(reread_)));
		o.Set("written", Napi::Boolean::New(env, written_));
		return o;
	}

private:
	enum Source { kGone, kCached, kListedSame, kListedChanged };

	// Fill d (its key set) and its subdirectories from the cache if its version still
	// holds, else by listing it. A directory listed again the same as cached (one that
	// is still too recent to trust) does not need the cache rewritten.
	Source refresh(int rootfd, Dir *d, std::vector<Text> *subdirs)
	{
		std::string rel = d->key.empty() ? "." : std::string(d->key);
		struct stat st;
		d->link_begin = d->link_end = links_.size();
		if (fstatat(rootfd, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
			return gone(d);
		const Cached *c = cache_->find(d->key);
		if (c && !c->version.empty() && c->version == dir_version(st)) {
			d->version = c->version;
			cache_->read(*c, subdirs, &links_);
			d->link_end = links_.size();
			return kCached;
		}
		std::string version;
		std::vector<Link> links;
		std::vector<std::string> names;
		if (!list_dir(rootfd, std::string(d->key), false, settle_ns_, &version, &links, &names))
			return gone(d);
		reread_++;
		d->version = keep(std::move(version));
		for (std::string &name : names)
			subdirs->push_back(keep(std::move(name)));
		for (Link &l : links)
			links_.push_back(Entry{keep(std::move(l.key)), keep(std::move(l.value))});
		d->link_end = links_.size();
		return c && same_as_cached(*d, *subdirs, *c) ? kListedSame : kListedChanged;
	}

	Source gone(Dir *d)
	{
		d->gone = true;
		return kGone;
	}

	bool same_as_cached(const Dir &d, const std::vector<Text> &subdirs, const Cached &c) const
	{
		std::vector<Text> cached_subdirs;
		std::vector<Entry> cached_links;
		cache_->read(c, &cached_subdirs, &cached_links);
		return d.version == c.version && subdirs == cached_subdirs &&
		       std::equal(links_.begin() + d.link_begin, links_.begin() + d.link_end,
				  cached_links.begin(), cached_links.end());
	}

	// Storage for what was listed, at addresses that stay put (std::deque never moves
	// its elements), so views of it live as long as the worker.
	Text keep(std::string s)
	{
		owned_.push_back(std::move(s));
		return owned_.back();
	}

	// Write the cache next to cache_path_ and rename it into place; false (and the old
	// file left as it was) if that failed, e.g. for a reader without write access to
	// the tree.
	bool store() const
	{
		Writer w;
		w.str(root_);
		uint32_t live = 0;
		for (const Dir &d : dirs_)
			live += d.gone ? 0 : 1;
		w.u32(live);
		for (const Dir &d : dirs_) {
			if (d.gone)
				continue;
			w.str(d.key);
			w.str(d.version);
			w.u32(static_cast<uint32_t>(d.child_end - d.child_begin));
			for (size_t k = d.child_begin; k < d.child_end; k++)
				w.str(dirs_[k].key);
			w.u32(static_cast<uint32_t>(d.link_end - d.link_begin));
			for (size_t k = d.link_begin; k < d.link_end; k++) {
				w.str(links_[k].key);
				w.str(links_[k].value);
			}
		}
		const std::string &payload = w.bytes();
		char header[kHeaderBytes] = {};
		uint64_t length = payload.size();
		uint32_t crc = phobos_crc32c(0, payload.data(), payload.size());
		std::memcpy(header, kMagic, sizeof(kMagic));
		std::memcpy(header + 4, &kFormat, 4);
		std::memcpy(header + 8, &length, 8);
		std::memcpy(header + 16, &crc, 4);

		std::string tmp = cache_path_ + ".tmp." + std::to_string(getpid());
		int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return false;
		const uint8_t *h = reinterpret_cast<const uint8_t *>(header);
		const uint8_t *p = reinterpret_cast<const uint8_t *>(payload.data());
		bool ok = pwrite_all(fd, h, sizeof(header), 0) == 0 &&
			  pwrite_all(fd, p, payload.size(), sizeof(header)) == 0;
		ok = close(fd) == 0 && ok;
		if (ok && rename(tmp.c_str(), cache_path_.c_str()) == 0)
			return true;
		unlink(tmp.c_str());
		return false;
	}

	std::string root_, cache_path_;
	int64_t settle_ns_;
	std::unique_ptr<CacheFile> cache_;
	std::deque<std::string> owned_;
	std::vector<Dir> dirs_;
	std::vector<Entry> links_;
	size_t reread_ = 0;
	bool written_ = false;
};

// readTreeValuesCached(root, cachePath, settleMs) -> Promise<{ keys, values, dirs, reread,
// written }>: every link under root with its value, the number of
// directories and of those listed again, and whether the cache was rewritten.
Napi::Value ReadTreeValuesCached(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string root, cache_path;
	if (!arg_string(info, 0, "root", &root) || !arg_string(info, 1, "cachePath", &cache_path))
		return env.Undefined();
	if (info.Length() < 3 || !info[2].IsNumber())
		return throw_error(env, "settleMs must be a number", "EPHOBOS_ARG");
	int64_t settle_ns = static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue() * 1e6);
	return (new CachedValuesWorker(env, root, cache_path, settle_ns))->Start();
}

}  // namespace

void register_tree_cache(Napi::Env env, Napi::Object exports)
{
	exports.Set("readTreeValuesCached", Napi::Function::New(env, ReadTreeValuesCached));
}

}  // namespace phobos
