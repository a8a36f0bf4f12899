// The `restyle` command line (kubectl-like): adapt, watch, wait, get, list,
// cancel, generators, generator, generate, delete, workers; -o json on every
// command; the server, TLS and token from flags or the environment. Every
// setting of the engine's settings table that a request may set is a flag of
// `restyle adapt`, with restyle-train's names and help (made from the same
// table). docs/cli.md has the whole reference.
//
// Thread-safety: RunCli once per process.
#ifndef RESTYLE_CLIENT_CLI_H_
#define RESTYLE_CLIENT_CLI_H_

namespace restyle::client {

// Parses the command line, runs the command and returns the exit code
// (exit_codes.h).
int RunCli(int argc, char** argv);

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_CLI_H_
