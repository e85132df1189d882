// SPDX-License-Identifier: GPL-2.0-only
/*
 * tree_walk.h - the pieces of tree_walk.cc that tree_cache.cc reuses: listing one
 * directory of links, a directory's version, and the { keys, values, stamps } result.
 */
#ifndef PHOBOS_ADDON_TREE_WALK_H
#define PHOBOS_ADDON_TREE_WALK_H

#include <sys/stat.h>

#include <string>
#include <vector>

#include "napi_util.h"

namespace phobos {

struct Link {
	std::string key;	// relative to the tree's root
	std::string value;
	uint64_t stamp_us;	// 0 when read without stamps
};

// List the directory open at dirfd, whose key is prefix ('' for the root), into out;
// names starting with '.' and regular files are skipped. With subdirs, subdirectories
// are listed there instead of walked into. Closes dirfd; returns 0 or an errno.
int walk(int dirfd, const std::string &prefix, bool stamps, std::vector<Link> *out,
	 std::vector<std::string> *subdirs = nullptr);

// "ino:mtime_ns:ctime_ns", the same text TreeWatcher builds from a BigIntStats.
std::string dir_version(const struct stat &st);

// List the directory `key` ('' for the root) under rootfd into out and subdirs, as walk
// does. False if it is gone, no directory, or the listing failed. Else *version is its
// version before the listing, or '' if it changed within settle_ns of it (not to be
// trusted yet: a change in the same timestamp granule would not move it).
bool list_dir(int rootfd, const std::string &key, bool stamps, int64_t settle_ns, std::string *version,
	      std::vector<Link> *out, std::vector<std::string> *subdirs);

// { keys, values, stamps }: three parallel arrays are much cheaper to build than one
// object per link.
Napi::Object links_object(Napi::Env env, const std::vector<Link> &links);

}  // namespace phobos

#endif
