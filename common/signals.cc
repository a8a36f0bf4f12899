#include "common/signals.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace restyle {
namespace {

int g_pipe[2] = {-1, -1};

void OnSignal(int signal) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(signal);
  [[maybe_unused]] ssize_t n = ::write(g_pipe[1], &byte, 1);
  errno = saved;
}

}  // namespace

void WatchTerminationSignals(std::function<void(int signal, int count)> on_signal) {
  if (::pipe(g_pipe) != 0) return;
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::thread([on_signal = std::move(on_signal)] {
    int count = 0;
    unsigned char byte = 0;
    while (true) {
      const ssize_t n = ::read(g_pipe[0], &byte, 1);
      if (n == 1) {
        on_signal(byte, ++count);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return;
      }
    }
  }).detach();
}

}  // namespace restyle
