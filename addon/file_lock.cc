// SPDX-License-Identifier: GPL-2.0-only
/*
 * file_lock.cc - advisory whole-file locks with flock(2).
 *
 * The kernel drops an flock when its holder exits, however it exits, so a marsadm or a
 * daemon killed with SIGKILL never leaves a stale lock behind. tryLock never blocks (the
 * JS side retries with backoff until its --timeout), so it may run on the main thread.
 */
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "napi_util.h"

namespace phobos {
namespace {

// tryLock(path) -> fd (number) if the exclusive lock was taken, null if another process
// holds it. Writes our pid into the file for the holder's message.
Napi::Value TryLock(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path;
	if (!arg_string(info, 0, "path", &path))
		return env.Undefined();
	int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int err = errno;
		return throw_error(env, sys_message("open lock " + path, err), errno_name(err).c_str());
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int err = errno;
		close(fd);
		if (err == EWOULDBLOCK)
			return env.Null();
		return throw_error(env, sys_message("lock " + path, err), errno_name(err).c_str());
	}
	// Fixed width, so no truncate is needed (this runs for every tree mutation). The pid
	// is only for messages; the lock is held whatever this write does.
	char pid[16];
	int n = snprintf(pid, sizeof(pid), "%10d\n", static_cast<int>(getpid()));
	if (pwrite(fd, pid, static_cast<size_t>(n), 0) < 0) {
		// ignored, see above
	}
	return Napi::Number::New(env, fd);
}

// unlock(fd): release and close.
Napi::Value Unlock(const Napi::CallbackInfo &info)
{
	uint64_t fd;
	if (!arg_u64(info, 0, "fd", &fd))
		return info.Env().Undefined();
	flock(static_cast<int>(fd), LOCK_UN);
	close(static_cast<int>(fd));
	return info.Env().Undefined();
}

}  // namespace

void register_file_lock(Napi::Env env, Napi::Object exports)
{
	exports.Set("tryLock", Napi::Function::New(env, TryLock));
	exports.Set("unlock", Napi::Function::New(env, Unlock));
}

}  // namespace phobos
