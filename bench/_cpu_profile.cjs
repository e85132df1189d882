/**
 * Preload (NODE_OPTIONS="--require bench/_cpu_profile.cjs"): a CPU profile of this process,
 * written to $PHOBOS_BENCH_PROFILE/<pid>-<argv summary>.cpuprofile. Node 20 refuses
 * --cpu-prof in NODE_OPTIONS, and the pipe transport starts peer-serve without our
 * execArgv; NODE_OPTIONS reaches it, so the profile starts here instead.
 *
 * To profile only a window of a benchmark: the first SIGUSR2 discards what was sampled so
 * far and starts again, the second writes the profile. Otherwise it is written at exit
 * (a SIGTERM that nobody else handles, as in peer-serve, writes it and exits too).
 */
'use strict';
const inspector = require('node:inspector');
const fs = require('node:fs');
const path = require('node:path');

const dir = process.env.PHOBOS_BENCH_PROFILE;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  // µs between samples; PHOBOS_BENCH_PROFILE_US raises it where sampling itself costs much
  // (a VM with slow timers: at 200 µs, nine idle processes used 60 % of a core each).
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.PHOBOS_BENCH_PROFILE_US || 200) });
  session.post('Profiler.start');
  let written = false;
  let windowed = false;
  const write = () => {
    if (written) return;
    written = true;
    // The same-thread session answers synchronously, so this works in an 'exit' handler.
    session.post('Profiler.stop', (err, result) => {
      if (err) return;
      const what = process.argv.slice(2).filter((a) => !a.startsWith('/')).slice(0, 6).join('_').replace(/[^A-Za-z0-9_.-]/g, '');
      fs.writeFileSync(path.join(dir, `${process.pid}-${what}.cpuprofile`), JSON.stringify(result.profile));
    });
  };
  process.on('exit', write);
  process.on('SIGTERM', () => {
    if (process.listenerCount('SIGTERM') > 1) return; // the program stops itself; 'exit' writes
    write();
    process.exit(143);
  });
  process.on('SIGUSR2', () => {
    if (windowed) {
      write();
      return;
    }
    windowed = true;
    session.post('Profiler.stop');
    session.post('Profiler.start');
  });
}
