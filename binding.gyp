{
  "targets": [
    {
      "target_name": "phobos",
      "sources": [
        "addon/main.cc",
        "addon/napi_util.cc",
        "addon/codecs.cc",
        "addon/log_file.cc",
        "addon/log_reader.cc",
        "addon/log_writer.cc",
        "addon/file_lock.cc",
        "addon/tree_walk.cc",
        "addon/tree_cache.cc",
        "addon/kernel_ctl.cc",
        "addon/unix_datagram.cc",
        "addon/crc32c.c",
        "kernel/common/phobos_log.c"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror"],
      "cflags_c": ["-std=gnu11"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
