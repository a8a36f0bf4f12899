// SIGTERM and SIGINT for the servers: a handler that only writes a byte to a
// pipe, and a thread that reads it and calls back. (Blocking the signals and
// sigwait-ing would not do: libraries such as OpenBLAS start threads before
// main, and a signal delivered to one of them would kill the process.)
//
// Thread-safety: call WatchTerminationSignals once, from main.
#ifndef RESTYLE_COMMON_SIGNALS_H_
#define RESTYLE_COMMON_SIGNALS_H_

#include <functional>

namespace restyle {

// Calls `on_signal(signal, count)` on a thread of its own for every SIGTERM
// or SIGINT; `count` is 1 for the first, 2 for the second, ...
void WatchTerminationSignals(std::function<void(int signal, int count)> on_signal);

}  // namespace restyle

#endif  // RESTYLE_COMMON_SIGNALS_H_
