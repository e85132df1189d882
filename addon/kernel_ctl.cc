// SPDX-License-Identifier: GPL-2.0-only
/*
 * kernel_ctl.cc - the bridge to phobos.ko's control device (kernel/uapi/phobos_ioctl.h).
 *
 * One function per ioctl; each opens the control device, issues the ioctl on libuv's
 * pool (CREATE replays a log and DESTROY drains writeback: both can take seconds) and
 * closes it again. Field meanings and error codes are in docs/kernel.md; policy (when to
 * create, where replay starts) is src/dataplane/kernel_engine.ts's.
 *
 * Every call takes the control device path first, so tests can point it elsewhere.
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>

#include "napi_util.h"
#include "../kernel/uapi/phobos_ioctl.h"

namespace phobos {
namespace {

// Copy a JS string into a fixed NUL-terminated field; false if it does not fit.
bool copy_field(char *field, size_t size, const std::string &value)
{
	if (value.size() >= size || value.find('\0') != std::string::npos)
		return false;
	std::memcpy(field, value.c_str(), value.size() + 1);
	return true;
}

template <typename T> void init_header(T *arg)
{
	std::memset(arg, 0, sizeof(*arg));
	arg->version = PHOBOS_IOCTL_VERSION;
	arg->size = sizeof(*arg);
}

// Runs one ioctl on the pool; `result` turns the filled struct into a JS object.
template <typename T> class IoctlWorker : public PromiseWorker {
public:
	using ResultFn = std::function<Napi::Value(Napi::Env, const T &)>;

	IoctlWorker(Napi::Env env, std::string ctl, unsigned long request, const char *what,
		    const T &arg, ResultFn result)
		: PromiseWorker(env), ctl_(std::move(ctl)), request_(request), what_(what),
		  arg_(arg), result_(std::move(result))
	{
	}

	void Execute() override
	{
		int fd = open(ctl_.c_str(), O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			int err = errno;
			Fail(sys_message("open " + ctl_, err), err);
			return;
		}
		int rc;
		do {
			rc = ioctl(fd, request_, &arg_);
		} while (rc < 0 && errno == EINTR);
		int err = errno;
		close(fd);
		if (rc < 0)
			Fail(sys_message(what_, err), err);
	}

	Napi::Value Result(Napi::Env env) override { return result_(env, arg_); }

private:
	std::string ctl_;
	unsigned long request_;
	std::string what_;
	T arg_;
	ResultFn result_;
};

template <typename T>
Napi::Value start(Napi::Env env, const std::string &ctl, unsigned long request, const std::string &what,
		  const T &arg, typename IoctlWorker<T>::ResultFn result)
{
	return (new IoctlWorker<T>(env, ctl, request, what.c_str(), arg, std::move(result)))->Start();
}

Napi::Value big(Napi::Env env, uint64_t v)
{
	return Napi::BigInt::New(env, v);
}

Napi::Value num(Napi::Env env, uint64_t v)
{
	return Napi::Number::New(env, static_cast<double>(v));
}

// Reads the common (ctlPath, name) arguments; false after throwing.
bool ctl_and_name(const Napi::CallbackInfo &info, std::string *ctl, std::string *name)
{
	if (!arg_string(info, 0, "ctlPath", ctl) || !arg_string(info, 1, "name", name))
		return false;
	if (name->empty() || name->size() >= PHOBOS_NAME_LEN) {
		throw_error(info.Env(), "resource name '" + *name + "' must have 1 to 63 characters", "EPHOBOS_ARG");
		return false;
	}
	return true;
}

// The common start of the per-resource calls: (ctlPath, name) read and checked, `arg`
// zeroed with its header and the name filled in. False after throwing.
template <typename T>
bool named_arg(const Napi::CallbackInfo &info, std::string *ctl, std::string *name, T *arg)
{
	if (!ctl_and_name(info, ctl, name))
		return false;
	init_header(arg);
	copy_field(arg->name, sizeof(arg->name), *name);
	return true;
}

// kernelVersion(ctlPath) -> Promise<{ moduleAbi, logFormat }>
Napi::Value KernelVersion(const Napi::CallbackInfo &info)
{
	std::string ctl;
	if (!arg_string(info, 0, "ctlPath", &ctl))
		return info.Env().Undefined();
	phobos_ioc_version v;
	init_header(&v);
	return start<phobos_ioc_version>(info.Env(), ctl, PHOBOS_IOC_VERSION, "PHOBOS_IOC_VERSION", v,
		[](Napi::Env env, const phobos_ioc_version &out) {
			Napi::Object o = Napi::Object::New(env);
			o.Set("moduleAbi", num(env, out.module_abi));
			o.Set("logFormat", num(env, out.log_format));
			return o;
		});
}

// kernelCreate(ctlPath, name, { backingPath, logPath, logSeq, replayFrom (-1: none),
//   sizeBytes, stampFloorNs (bigint), completion, codec })
//   -> Promise<{ minor, logEnd, replayedRecords, replayedBytes, truncatedBytes }>
Napi::Value KernelCreate(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string ctl, name;
	phobos_ioc_create c;
	if (!named_arg(info, &ctl, &name, &c))
		return env.Undefined();
	if (info.Length() < 3 || !info[2].IsObject())
		return throw_error(env, "kernelCreate: options must be an object", "EPHOBOS_ARG");
	Napi::Object o = info[2].As<Napi::Object>();
	std::string backing = opt_string(o, "backingPath", ""), log = opt_string(o, "logPath", "");
	if (!copy_field(c.backing_path, sizeof(c.backing_path), backing) ||
	    !copy_field(c.log_path, sizeof(c.log_path), log))
		return throw_error(env, "kernelCreate " + name + ": paths must be shorter than " +
				   std::to_string(PHOBOS_PATH_LEN) + " bytes", "ENAMETOOLONG");
	uint64_t seq, size, completion, codec, stamp, replay_from = 0;
	if (!opt_u64(env, o, "logSeq", 1, &seq) || !opt_u64(env, o, "sizeBytes", 0, &size) ||
	    !opt_u64(env, o, "completion", PHOBOS_COMPLETION_LOGGED, &completion) ||
	    !opt_u64(env, o, "codec", PHOBOS_IOC_CODEC_NONE, &codec) ||
	    !opt_u64(env, o, "stampFloorNs", 0, &stamp))
		return env.Undefined();
	Napi::Value from = o.Get("replayFrom");
	if (from.IsNumber() && from.As<Napi::Number>().DoubleValue() < 0) {
		c.replay_from = PHOBOS_NO_REPLAY;
	} else if (!opt_u64(env, o, "replayFrom", 0, &replay_from)) {
		return env.Undefined();
	} else {
		c.replay_from = replay_from;
	}
	c.log_seq = seq;
	c.size_bytes = size;
	c.stamp_floor_ns = stamp;
	c.completion = static_cast<uint32_t>(completion);
	c.codec = static_cast<uint32_t>(codec);
	return start<phobos_ioc_create>(env, ctl, PHOBOS_IOC_CREATE, "PHOBOS_IOC_CREATE " + name, c,
		[](Napi::Env env, const phobos_ioc_create &out) {
			Napi::Object r = Napi::Object::New(env);
			r.Set("minor", num(env, out.minor));
			r.Set("logEnd", num(env, out.log_end));
			r.Set("replayedRecords", num(env, out.replayed_records));
			r.Set("replayedBytes", num(env, out.replayed_bytes));
			r.Set("truncatedBytes", num(env, out.truncated_bytes));
			return r;
		});
}

// kernelDestroy(ctlPath, name) -> Promise<{ logEnd }>
Napi::Value KernelDestroy(const Napi::CallbackInfo &info)
{
	std::string ctl, name;
	phobos_ioc_destroy d;
	if (!named_arg(info, &ctl, &name, &d))
		return info.Env().Undefined();
	return start<phobos_ioc_destroy>(info.Env(), ctl, PHOBOS_IOC_DESTROY, "PHOBOS_IOC_DESTROY " + name, d,
		[](Napi::Env env, const phobos_ioc_destroy &out) {
			Napi::Object r = Napi::Object::New(env);
			r.Set("logEnd", num(env, out.log_end));
			return r;
		});
}

// kernelSwitchLog(ctlPath, name, logPath, logSeq) -> Promise<{ oldEnd }>
Napi::Value KernelSwitchLog(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string ctl, name, log;
	uint64_t seq;
	phobos_ioc_switch_log s;
	if (!named_arg(info, &ctl, &name, &s) || !arg_string(info, 2, "logPath", &log) ||
	    !arg_u64(info, 3, "logSeq", &seq))
		return env.Undefined();
	if (!copy_field(s.log_path, sizeof(s.log_path), log))
		return throw_error(env, "kernelSwitchLog " + name + ": log path too long", "ENAMETOOLONG");
	s.log_seq = seq;
	return start<phobos_ioc_switch_log>(env, ctl, PHOBOS_IOC_SWITCH_LOG, "PHOBOS_IOC_SWITCH_LOG " + name, s,
		[](Napi::Env env, const phobos_ioc_switch_log &out) {
			Napi::Object r = Napi::Object::New(env);
			r.Set("oldEnd", num(env, out.old_end));
			return r;
		});
}

// kernelQuery(ctlPath, name) -> Promise<{ minor, state, ..., counters }> (positions as numbers)
Napi::Value KernelQuery(const Napi::CallbackInfo &info)
{
	std::string ctl, name;
	phobos_ioc_query q;
	if (!named_arg(info, &ctl, &name, &q))
		return info.Env().Undefined();
	return start<phobos_ioc_query>(info.Env(), ctl, PHOBOS_IOC_QUERY, "PHOBOS_IOC_QUERY " + name, q,
		[](Napi::Env env, const phobos_ioc_query &out) {
			Napi::Object r = Napi::Object::New(env);
			r.Set("minor", num(env, out.minor));
			r.Set("state", num(env, out.state));
			r.Set("completion", num(env, out.completion));
			r.Set("codec", num(env, out.codec));
			r.Set("sizeBytes", num(env, out.size_bytes));
			r.Set("logSeq", num(env, out.log_seq));
			r.Set("logPos", num(env, out.log_pos));
			r.Set("syncedPos", num(env, out.synced_pos));
			r.Set("wbLogSeq", num(env, out.wb_log_seq));
			r.Set("wbPos", num(env, out.wb_pos));
			r.Set("wbDurableLogSeq", num(env, out.wb_durable_log_seq));
			r.Set("wbDurablePos", num(env, out.wb_durable_pos));
			r.Set("pendingBytes", num(env, out.pending_bytes));
			r.Set("writes", big(env, out.writes));
			r.Set("zeroes", big(env, out.zeroes));
			r.Set("flushes", big(env, out.flushes));
			r.Set("reads", big(env, out.reads));
			r.Set("records", big(env, out.records));
			r.Set("logFsyncs", big(env, out.log_fsyncs));
			r.Set("logErrors", big(env, out.log_errors));
			r.Set("wbErrors", big(env, out.wb_errors));
			return r;
		});
}

// kernelSetCompletion(ctlPath, name, completion) -> Promise<undefined>
Napi::Value KernelSetCompletion(const Napi::CallbackInfo &info)
{
	std::string ctl, name;
	uint64_t completion;
	phobos_ioc_set_completion s;
	if (!named_arg(info, &ctl, &name, &s) || !arg_u64(info, 2, "completion", &completion))
		return info.Env().Undefined();
	s.completion = static_cast<uint32_t>(completion);
	return start<phobos_ioc_set_completion>(info.Env(), ctl, PHOBOS_IOC_SET_COMPLETION,
		"PHOBOS_IOC_SET_COMPLETION " + name, s,
		[](Napi::Env env, const phobos_ioc_set_completion &) { return env.Undefined(); });
}

}  // namespace

void register_kernel_ctl(Napi::Env env, Napi::Object exports)
{
	exports.Set("kernelCtlDevice", Napi::String::New(env, PHOBOS_CTL_DEVICE));
	exports.Set("kernelAbiVersion", Napi::Number::New(env, PHOBOS_IOCTL_VERSION));
	exports.Set("kernelVersion", Napi::Function::New(env, KernelVersion));
	exports.Set("kernelCreate", Napi::Function::New(env, KernelCreate));
	exports.Set("kernelDestroy", Napi::Function::New(env, KernelDestroy));
	exports.Set("kernelSwitchLog", Napi::Function::New(env, KernelSwitchLog));
	exports.Set("kernelQuery", Napi::Function::New(env, KernelQuery));
	exports.Set("kernelSetCompletion", Napi::Function::New(env, KernelSetCompletion));
}

}  // namespace phobos
