// SPDX-License-Identifier: GPL-2.0-only
#include "napi_util.h"

#include <cmath>

namespace phobos {

std::string errno_name(int err)
{
	switch (err) {
#define PHOBOS_ERRNO(e) \
	case e:         \
		return #e;
		PHOBOS_ERRNO(ENOENT)
		PHOBOS_ERRNO(EACCES)
		PHOBOS_ERRNO(EPERM)
		PHOBOS_ERRNO(EEXIST)
		PHOBOS_ERRNO(EISDIR)
		PHOBOS_ERRNO(ENOTDIR)
		PHOBOS_ERRNO(ENOSPC)
		PHOBOS_ERRNO(EDQUOT)
		PHOBOS_ERRNO(EIO)
		PHOBOS_ERRNO(EINVAL)
		PHOBOS_ERRNO(EBUSY)
		PHOBOS_ERRNO(EROFS)
		PHOBOS_ERRNO(EFBIG)
		PHOBOS_ERRNO(EBADF)
		PHOBOS_ERRNO(ENOMEM)
		PHOBOS_ERRNO(EMFILE)
		PHOBOS_ERRNO(ENXIO)
		PHOBOS_ERRNO(EOVERFLOW)
		PHOBOS_ERRNO(ENOTTY)
		PHOBOS_ERRNO(EUCLEAN)
		PHOBOS_ERRNO(EOPNOTSUPP)
		PHOBOS_ERRNO(ENAMETOOLONG)
#undef PHOBOS_ERRNO
	default:
		return "E" + std::to_string(err);
	}
}

Napi::Value throw_error(Napi::Env env, const std::string &message, const char *code)
{
	Napi::Error error = Napi::TypeError::New(env, message);
	error.Set("code", Napi::String::New(env, code));
	error.ThrowAsJavaScriptException();
	return env.Undefined();
}

bool arg_buffer(const Napi::CallbackInfo &info, size_t i, const char *name,
		Napi::Uint8Array *out)
{
	if (info.Length() <= i || !info[i].IsTypedArray() ||
	    info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
		throw_error(info.Env(), std::string(name) + " must be a Buffer or Uint8Array",
			    "EPHOBOS_ARG");
		return false;
	}
	*out = info[i].As<Napi::Uint8Array>();
	return true;
}

bool arg_string(const Napi::CallbackInfo &info, size_t i, const char *name, std::string *out)
{
	if (info.Length() <= i || !info[i].IsString()) {
		throw_error(info.Env(), std::string(name) + " must be a string", "EPHOBOS_ARG");
		return false;
	}
	*out = info[i].As<Napi::String>().Utf8Value();
	return true;
}

static bool value_u64(Napi::Env env, Napi::Value v, const char *name, uint64_t *out)
{
	if (v.IsBigInt()) {
		bool lossless = false;
		*out = v.As<Napi::BigInt>().Uint64Value(&lossless);
		if (lossless)
			return true;
	} else if (v.IsNumber()) {
		double d = v.As<Napi::Number>().DoubleValue();
		if (d >= 0 && d <= 9007199254740992.0 && std::floor(d) == d) {
			*out = static_cast<uint64_t>(d);
			return true;
		}
	}
	throw_error(env, std::string(name) + " must be a non-negative integer", "EPHOBOS_ARG");
	return false;
}

bool arg_u64(const Napi::CallbackInfo &info, size_t i, const char *name, uint64_t *out)
{
	if (info.Length() <= i)
		return value_u64(info.Env(), info.Env().Undefined(), name, out);
	return value_u64(info.Env(), info[i], name, out);
}

bool opt_u64(Napi::Env env, Napi::Object opts, const char *name, uint64_t fallback,
	     uint64_t *out)
{
	Napi::Value v = opts.Get(name);
	if (v.IsUndefined() || v.IsNull()) {
		*out = fallback;
		return true;
	}
	return value_u64(env, v, name, out);
}

bool opt_bool(Napi::Object opts, const char *name, bool fallback)
{
	Napi::Value v = opts.Get(name);
	return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : fallback;
}

std::string opt_string(Napi::Object opts, const char *name, const std::string &fallback)
{
	Napi::Value v = opts.Get(name);
	return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}

}  // namespace phobos
