// SPDX-License-Identifier: GPL-2.0-only
/*
 * tree_walk.cc - read every link of a /mars tree in one call (worker thread).
 *
 * The tree is a directory of symlinks whose target is the value and whose mtime is the
 * Lamport stamp. Reading it through Node's fs costs a threadpool round trip per syscall
 * (three per link: lstat, readlink, lstat); a 9000-link tree took a second. Here the walk
 * uses openat/readdir/fstatat/readlinkat directly, with the same torn-read rule as the
 * TypeScript reader: lstat, readlink, lstat again, retry until both lstats agree, so value
 * and stamp come from one version of the link.
 *
 * Names starting with '.' (temp links, .lock, .lamport) are skipped; so are regular files
 * (logs). Keys are paths relative to the root. Validating keys is the caller's job.
 *
 * statTreeDirs() is the cheap half of a rescan: one fstatat per known directory, so the
 * watcher re-reads only directories whose version (inode, mtime, ctime) moved. Every tree
 * write renames into its directory, which moves that directory's mtime and ctime.
 * readTreeDirs() is the other half: the links and subdirectories of those directories,
 * each with the version it had before it was listed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tree_walk.h"

namespace phobos {
namespace {

bool same_version(const struct stat &a, const struct stat &b)
{
	return a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
	       a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
	       a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

// Read one link at dirfd/name; false if it vanished or is no longer a link.
bool read_link(int dirfd, const char *name, std::string *value, uint64_t *stamp_us)
{
	char buf[4096];
	for (int attempt = 0; attempt < 100; attempt++) {
		struct stat before, after;
		if (fstatat(dirfd, name, &before, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(before.st_mode))
			return false;
		ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf));
		if (n < 0)
			return false;
		if (fstatat(dirfd, name, &after, AT_SYMLINK_NOFOLLOW) != 0)
			return false;
		if (!same_version(before, after))
			continue;	// replaced between the calls: read again
		value->assign(buf, static_cast<size_t>(n));
		*stamp_us = static_cast<uint64_t>(before.st_mtim.tv_sec) * 1000000u +
			    static_cast<uint64_t>(before.st_mtim.tv_nsec) / 1000u;
		return true;
	}
	return false;
}

// Values only: one readlinkat (atomic by itself); no stamps, no torn-read check needed.
bool read_value(int dirfd, const char *name, std::string *value)
{
	char buf[4096];
	ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf));
	if (n < 0)
		return false;
	value->assign(buf, static_cast<size_t>(n));
	return true;
}

}  // namespace

// getdents64 directly: fdopendir/readdir add an fstat and two fcntl calls per directory,
// and a tree has a few directories per resource (syscalls cost ~3 us on a small VM).
int walk(int dirfd, const std::string &prefix, bool stamps, std::vector<Link> *out,
	 std::vector<std::string> *subdirs)
{
	alignas(8) char buf[32768];
	for (;;) {
		ssize_t got = getdents64(dirfd, buf, sizeof(buf));
		if (got < 0) {
			int err = errno;
			close(dirfd);
			return err;
		}
		if (got == 0)
			break;
		for (ssize_t at = 0; at < got;) {
			const struct dirent64 *d = reinterpret_cast<const struct dirent64 *>(buf + at);
			at += d->d_reclen;
			if (d->d_name[0] == '.')
				continue;
			std::string key = prefix.empty() ? d->d_name : prefix + "/" + d->d_name;
			unsigned char type = d->d_type;
			if (type == DT_UNKNOWN) {
				struct stat st;
				if (fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
					continue;
				type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_REG;
			}
			if (type == DT_DIR && subdirs) {
				subdirs->push_back(std::move(key));
			} else if (type == DT_DIR) {
				int sub = openat(dirfd, d->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (sub >= 0)
					walk(sub, key, stamps, out);	// a directory that vanished is gone
			} else if (type == DT_LNK) {
				Link link{key, {}, 0};
				bool ok = stamps ? read_link(dirfd, d->d_name, &link.value, &link.stamp_us)
						 : read_value(dirfd, d->d_name, &link.value);
				if (ok)
					out->push_back(std::move(link));
			}
		}
	}
	close(dirfd);
	return 0;
}

Napi::Object links_object(Napi::Env env, const std::vector<Link> &links)
{
	Napi::Array keys = Napi::Array::New(env, links.size());
	Napi::Array values = Napi::Array::New(env, links.size());
	Napi::Float64Array stamps = Napi::Float64Array::New(env, links.size());
	for (size_t i = 0; i < links.size(); i++) {
		keys[i] = Napi::String::New(env, links[i].key);
		values[i] = Napi::String::New(env, links[i].value);
		stamps[i] = static_cast<double>(links[i].stamp_us);
	}
	Napi::Object o = Napi::Object::New(env);
	o.Set("keys", keys);
	o.Set("values", values);
	o.Set("stamps", stamps);
	return o;
}

static int64_t ns_of(const struct timespec &t)
{
	return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

std::string dir_version(const struct stat &st)
{
	return std::to_string(static_cast<uint64_t>(st.st_ino)) + ":" + std::to_string(ns_of(st.st_mtim)) +
	       ":" + std::to_string(ns_of(st.st_ctim));
}

bool list_dir(int rootfd, const std::string &key, bool stamps, int64_t settle_ns, std::string *version,
	      std::vector<Link> *out, std::vector<std::string> *subdirs)
{
	int fd = openat(rootfd, key.empty() ? "." : key.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	struct timespec now;
	if (fstat(fd, &st) != 0 || clock_gettime(CLOCK_REALTIME, &now) != 0) {
		close(fd);
		return false;
	}
	// The version is taken before the listing, so any later change moves it. It counts
	// only if the directory had been quiet for settle_ns: a change in the same timestamp
	// granule would not move it.
	bool settled = ns_of(st.st_ctim) < ns_of(now) - settle_ns;
	if (walk(fd, key, stamps, out, subdirs) != 0)
		return false;	// walk closed fd
	*version = settled ? dir_version(st) : "";
	return true;
}

namespace {

class TreeWalkWorker : public PromiseWorker {
public:
	TreeWalkWorker(Napi::Env env, std::string root, std::string subdir, bool stamps)
		: PromiseWorker(env), root_(std::move(root)), subdir_(std::move(subdir)), stamps_(stamps)
	{
	}

	void Execute() override
	{
		std::string start = subdir_.empty() ? root_ : root_ + "/" + subdir_;
		int fd = open(start.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				return;	// nothing there: no links
			return Fail(sys_message("open " + start, errno), errno);
		}
		int err = walk(fd, subdir_, stamps_, &links_);
		if (err)
			Fail(sys_message("read " + start, err), err);
	}

	Napi::Value Result(Napi::Env env) override
	{
		return links_object(env, links_);
	}

private:
	std::string root_, subdir_;
	bool stamps_;
	std::vector<Link> links_;
};

class DirStatWorker : public PromiseWorker {
public:
	DirStatWorker(Napi::Env env, std::string root, std::vector<std::string> keys)
		: PromiseWorker(env), root_(std::move(root)), keys_(std::move(keys))
	{
	}

	void Execute() override
	{
		int rootfd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0)
			return Fail(sys_message("open " + root_, errno), errno);
		versions_.resize(keys_.size());
		found_.assign(keys_.size(), false);
		for (size_t i = 0; i < keys_.size(); i++) {
			struct stat st;
			const char *rel = keys_[i].empty() ? "." : keys_[i].c_str();
			if (fstatat(rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
				continue;	// gone or replaced: the caller re-checks the key
			versions_[i] = dir_version(st);
			found_[i] = true;
		}
		close(rootfd);
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Array out = Napi::Array::New(env, keys_.size());
		for (size_t i = 0; i < keys_.size(); i++)
			out[i] = found_[i] ? Napi::Value(Napi::String::New(env, versions_[i])) : env.Null();
		return out;
	}

private:
	std::string root_;
	std::vector<std::string> keys_;
	std::vector<std::string> versions_;
	std::vector<bool> found_;
};

// Relative keys from a JS array; false (with a JS exception pending) on bad input.
bool arg_keys(const Napi::CallbackInfo &info, size_t i, std::vector<std::string> *out)
{
	Napi::Env env = info.Env();
	if (info.Length() <= i || !info[i].IsArray()) {
		throw_error(env, "keys must be an array of strings", "EPHOBOS_ARG");
		return false;
	}
	Napi::Array list = info[i].As<Napi::Array>();
	out->reserve(list.Length());
	for (uint32_t k = 0; k < list.Length(); k++) {
		Napi::Value v = list[k];
		if (!v.IsString()) {
			throw_error(env, "keys must be an array of strings", "EPHOBOS_ARG");
			return false;
		}
		std::string key = v.As<Napi::String>().Utf8Value();
		if (key.find("..") != std::string::npos || (!key.empty() && key[0] == '/')) {
			throw_error(env, "a key must be a relative path inside the tree", "EPHOBOS_ARG");
			return false;
		}
		out->push_back(std::move(key));
	}
	return true;
}

// statTreeDirs(root, keys) -> Promise<(string | null)[]>: each directory's version, null
// where the key is missing or not a directory. Keys are relative to root ('' is the root).
Napi::Value StatTreeDirs(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string root;
	if (!arg_string(info, 0, "root", &root))
		return env.Undefined();
	std::vector<std::string> keys;
	if (!arg_keys(info, 1, &keys))
		return env.Undefined();
	return (new DirStatWorker(env, root, std::move(keys)))->Start();
}

class DirReadWorker : public PromiseWorker {
public:
	DirReadWorker(Napi::Env env, std::string root, std::vector<std::string> dirs, int64_t settle_ns)
		: PromiseWorker(env), root_(std::move(root)), dirs_(std::move(dirs)), settle_ns_(settle_ns)
	{
	}

	void Execute() override
	{
		int rootfd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0)
			return Fail(sys_message("open " + root_, errno), errno);
		versions_.resize(dirs_.size());
		state_.assign(dirs_.size(), kGone);
		for (size_t i = 0; i < dirs_.size(); i++) {
			// Gone, no longer a directory or a failed listing: the caller re-checks it.
			if (!list_dir(rootfd, dirs_[i], true, settle_ns_, &versions_[i], &links_, &subdirs_))
				continue;
			state_[i] = versions_[i].empty() ? kRecent : kSettled;
		}
		close(rootfd);
	}

	Napi::Value Result(Napi::Env env) override
	{
		Napi::Object o = links_object(env, links_);
		Napi::Array subdirs = Napi::Array::New(env, subdirs_.size());
		for (size_t i = 0; i < subdirs_.size(); i++)
			subdirs[i] = Napi::String::New(env, subdirs_[i]);
		Napi::Array versions = Napi::Array::New(env, dirs_.size());
		for (size_t i = 0; i < dirs_.size(); i++) {
			if (state_[i] == kSettled)
				versions[i] = Napi::String::New(env, versions_[i]);
			else if (state_[i] == kRecent)
				versions[i] = Napi::String::New(env, "");
			else
				versions[i] = env.Null();
		}
		o.Set("subdirs", subdirs);
		o.Set("versions", versions);
		return o;
	}

private:
	enum State : uint8_t { kGone, kRecent, kSettled };
	std::string root_;
	std::vector<std::string> dirs_;
	int64_t settle_ns_;
	std::vector<Link> links_;
	std::vector<std::string> subdirs_;
	std::vector<std::string> versions_;
	std::vector<uint8_t> state_;
};

// readTreeDirs(root, dirs, settleMs) -> Promise<{ keys, values, stamps, subdirs, versions }>:
// the links (with stamps) and subdirectory keys directly inside each directory, and per
// directory its version before the listing: null if it is gone or no directory, '' if it
// changed within settleMs of the listing (not to be trusted yet).
Napi::Value ReadTreeDirs(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string root;
	std::vector<std::string> dirs;
	if (!arg_string(info, 0, "root", &root) || !arg_keys(info, 1, &dirs))
		return env.Undefined();
	if (info.Length() < 3 || !info[2].IsNumber())
		return throw_error(env, "settleMs must be a number", "EPHOBOS_ARG");
	int64_t settle_ns = static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue() * 1e6);
	return (new DirReadWorker(env, root, std::move(dirs), settle_ns))->Start();
}

// readTreeLinks(root, subdir = '', stamps = true) -> Promise<{ keys, values, stamps }>
// With stamps = false every stamp is 0 and each link costs one readlinkat.
Napi::Value ReadTreeLinks(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string root, subdir;
	if (!arg_string(info, 0, "root", &root))
		return env.Undefined();
	if (info.Length() > 1 && !arg_string(info, 1, "subdir", &subdir))
		return env.Undefined();
	if (subdir.find("..") != std::string::npos || (!subdir.empty() && subdir[0] == '/'))
		return throw_error(env, "subdir must be a relative path inside the tree", "EPHOBOS_ARG");
	bool stamps = info.Length() < 3 || info[2].ToBoolean().Value();
	return (new TreeWalkWorker(env, root, subdir, stamps))->Start();
}

}  // namespace

void register_tree_walk(Napi::Env env, Napi::Object exports)
{
	exports.Set("readTreeLinks", Napi::Function::New(env, ReadTreeLinks));
	exports.Set("statTreeDirs", Napi::Function::New(env, StatTreeDirs));
	exports.Set("readTreeDirs", Napi::Function::New(env, ReadTreeDirs));
}

}  // namespace phobos
