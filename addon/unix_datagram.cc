// SPDX-License-Identifier: GPL-2.0-only
/*
 * unix_datagram.cc - send one datagram to a UNIX datagram socket: how marsadm writes its
 * command log to syslog (/dev/log) without starting logger(1).
 *
 * Node has no AF_UNIX datagram sockets, and a child process costs every marsadm run the
 * child_process modules and a fork of a ~60 MiB process, for one line. The send never
 * blocks (MSG_DONTWAIT): a journal that is not keeping up loses the line, it does not
 * hold up the command. It runs on the main thread: one socket, one sendto, one close.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "napi_util.h"

namespace phobos {
namespace {

// sendUnixDatagram(path, message: string) -> null when sent, else the errno name
// ("ENOENT" when nothing listens at path, "EAGAIN" when its queue is full). Never throws
// for a failed send: the caller decides whether a lost line matters.
Napi::Value SendUnixDatagram(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path, message;
	if (!arg_string(info, 0, "path", &path) || !arg_string(info, 1, "message", &message))
		return env.Undefined();
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(addr.sun_path))
		return Napi::String::New(env, "ENAMETOOLONG");
	std::memcpy(addr.sun_path, path.data(), path.size());
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return Napi::String::New(env, errno_name(errno));
	ssize_t sent = sendto(fd, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
			      reinterpret_cast<const sockaddr *>(&addr), sizeof(addr));
	int err = errno;
	close(fd);
	if (sent < 0)
		return Napi::String::New(env, errno_name(err));
	return env.Null();
}

}  // namespace

void register_unix_datagram(Napi::Env env, Napi::Object exports)
{
	exports.Set("sendUnixDatagram", Napi::Function::New(env, SendUnixDatagram));
}

}  // namespace phobos
