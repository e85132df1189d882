// SPDX-License-Identifier: GPL-2.0-only
/*
 * io_util.h - small POSIX I/O helpers shared by the addon's workers.
 */
#ifndef PHOBOS_ADDON_IO_UTIL_H
#define PHOBOS_ADDON_IO_UTIL_H

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace phobos {

// pwrite all len bytes at off, retrying short writes and EINTR. Returns 0 or an errno
// (ENOSPC if the device stops taking bytes without saying why).
inline int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, static_cast<off_t>(off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return ENOSPC;
		p += n;
		len -= static_cast<size_t>(n);
		off += static_cast<uint64_t>(n);
	}
	return 0;
}

}  // namespace phobos

#endif
