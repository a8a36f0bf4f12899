// restyle: the command line of Restyle (client/cli.h).
#include "client/cli.h"

int main(int argc, char** argv) { return restyle::client::RunCli(argc, argv); }
