// SPDX-License-Identifier: GPL-2.0-only
/*
 * napi_util.h - the few N-API patterns every addon file uses.
 *
 * All file and CPU work runs in Execute() on libuv's pool; results become JS values in
 * OnOK() on the main thread. Errors reach JS as Error objects with a stable string
 * `code` (an errno name such as "ENOSPC", or a Phobos code such as "EPHOBOS_ARG").
 */
#ifndef PHOBOS_ADDON_NAPI_UTIL_H
#define PHOBOS_ADDON_NAPI_UTIL_H

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace phobos {

// The errno name, e.g. "ENOENT"; falls back to "EIO" style "E<number>".
std::string errno_name(int err);

// "open /x/y: No such file or directory"
inline std::string sys_message(const std::string &what, int err)
{
	return what + ": " + std::strerror(err);
}

// Throw a JS TypeError/Error with a code; returns undefined for convenient `return`.
Napi::Value throw_error(Napi::Env env, const std::string &message, const char *code);

// A worker that settles a promise. Subclasses fill Execute() and Result().
class PromiseWorker : public Napi::AsyncWorker {
public:
	explicit PromiseWorker(Napi::Env env)
		: Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env))
	{
	}

	// Queue the worker and hand its promise to JS.
	Napi::Promise Start()
	{
		Napi::Promise promise = deferred_.Promise();
		Queue();
		return promise;
	}

protected:
	virtual Napi::Value Result(Napi::Env env) = 0;

	// From Execute(): fail with an errno (code = its name) or a Phobos code.
	void Fail(const std::string &message, int err)
	{
		code_ = errno_name(err);
		SetError(message);
	}
	void Fail(const std::string &message, const char *code)
	{
		code_ = code;
		SetError(message);
	}

	void OnOK() override
	{
		Napi::HandleScope scope(Env());
		deferred_.Resolve(Result(Env()));
	}
	void OnError(const Napi::Error &e) override
	{
		Napi::HandleScope scope(Env());
		Napi::Object error = e.Value();
		error.Set("code", Napi::String::New(Env(), code_.empty() ? "EPHOBOS" : code_));
		deferred_.Reject(error);
	}

private:
	Napi::Promise::Deferred deferred_;
	std::string code_;
};

// Argument helpers: each throws a TypeError naming the argument and returns false.
bool arg_buffer(const Napi::CallbackInfo &info, size_t i, const char *name,
		Napi::Uint8Array *out);
bool arg_string(const Napi::CallbackInfo &info, size_t i, const char *name, std::string *out);
// A non-negative integer given as a number (exact, <= 2^53) or a bigint.
bool arg_u64(const Napi::CallbackInfo &info, size_t i, const char *name, uint64_t *out);
bool opt_u64(Napi::Env env, Napi::Object opts, const char *name, uint64_t fallback,
	     uint64_t *out);
bool opt_bool(Napi::Object opts, const char *name, bool fallback);
std::string opt_string(Napi::Object opts, const char *name, const std::string &fallback);

}  // namespace phobos

#endif
