#pragma once
// Consensus messages on the wire: conversion between consensus::Message and the peer frames of
// protocol/peer_messages.h. Lives in the node layer because the protocol layer sits below consensus.

#include <string>
#include <vector>

#include "common/result.h"
#include "consensus/messages.h"
#include "protocol/frame.h"

namespace cohort::node {

bool is_peer_message(protocol::MessageType type) noexcept;

/// Appends `message` to `out` as one frame.
void append_peer_frame(const consensus::Message& message, std::vector<std::byte>& out);

/// Decodes a peer frame (its type satisfies is_peer_message) into `out`. An append request reuses the entries'
/// vector of the last one decoded into `out`, which `spare_entries` keeps while other messages pass: in steady
/// state decoding allocates nothing. The error says what is wrong; entry checksums are verified by the consensus
/// core, not here.
Status<std::string> decode_peer_frame(const protocol::Frame& frame, consensus::Message& out,
                                      std::vector<consensus::Entry>& spare_entries);

}  // namespace cohort::node
