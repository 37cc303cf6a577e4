#pragma once
// `cohort stream`: sends a numbered stream to a cluster running the ledger service (src/services/ledger_service.h)
// through the real client, shows what the client goes through while it runs, and ends by holding the fate the
// client gave every number against the ledger's record. docs/operations.md ("Streaming through the client") shows
// its output.

#include <cstdint>
#include <string>
#include <vector>

namespace cohort::tool {

struct StreamOptions {
  std::uint64_t cluster_id = 0;
  std::vector<std::string> members;  // client endpoints, host:port
  double rate = 1000;                // messages per second; 0: as fast as the client's buffer allows
  std::uint64_t count = 0;           // stop after this many accepted; 0: no limit
  double duration_s = 0;             // stop sending after this long; 0: no limit (neither: until Ctrl-C)
  bool json = false;                 // the summary as one JSON object on stdout, and nothing else there
  double drain_s = 30;               // after the last offer, wait this long for every fate and the ledger's answer
  double give_up_after_s = 0;        // ClientOptions::give_up_after (0: never)
  bool verbose = false;              // the client library's own log lines (info and up) on stderr
  std::string credential;            // ClientOptions::credential
};

/// Runs the stream; returns the exit status: 0 if nothing was lost, duplicated or left unknown (by the client's
/// fates and the ledger's record), 1 otherwise (or if the ledger did not answer), 2 if the options are invalid.
int run_stream(const StreamOptions& options);

}  // namespace cohort::tool
