#include "storage/format.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <xxhash.h>

namespace cohort::storage {
namespace {

constexpr std::uint64_t kSegmentMagic = 0x475354524F484F43ULL;   // "COHORTSG" read little-endian
constexpr std::uint64_t kMetadataMagic = 0x444D54524F484F43ULL;  // "COHORTMD"
constexpr std::uint64_t kMachineMagic = 0x434D54524F484F43ULL;   // "COHORTMC"
constexpr std::uint64_t kBaseMagic = 0x534254524F484F43ULL;      // "COHORTBS"
constexpr std::string_view kSegmentPrefix = "log-";
constexpr std::string_view kSegmentSuffix = ".seg";
constexpr std::size_t kIndexDigits = 20;

std::uint64_t hash(const std::byte* bytes, std::size_t size) noexcept { return XXH3_64bits(bytes, size); }

/// The size, magic number and format version that open the segment header and every small file.
bool preamble_ok(ByteSpan bytes, std::size_t size, bool exact, std::uint64_t magic, std::string_view what,
                 std::string& reason) {
  if (exact ? bytes.size() != size : bytes.size() < size) {
    reason = fmt::format("{} is {} bytes, expected {}", what, bytes.size(), size);
    return false;
  }
  if (load_le<std::uint64_t>(bytes.data()) != magic) {
    reason = fmt::format("not a Cohort {} (bad magic number)", what);
    return false;
  }
  if (const auto version = load_le<std::uint32_t>(bytes.data() + 8); version != kFormatVersion) {
    reason = fmt::format("{} format version {} is not supported (this build reads version {})", what, version,
                         kFormatVersion);
    return false;
  }
  return true;
}

}  // namespace

std::string segment_name(LogIndex first_index) {
  return fmt::format("{}{:020}{}", kSegmentPrefix, first_index.value(), kSegmentSuffix);
}

std::optional<LogIndex> parse_segment_name(std::string_view name) {
  if (name.size() != kSegmentPrefix.size() + kIndexDigits + kSegmentSuffix.size() ||
      !name.starts_with(kSegmentPrefix) || !name.ends_with(kSegmentSuffix))
    return std::nullopt;
  const std::string_view digits = name.substr(kSegmentPrefix.size(), kIndexDigits);
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc{} || end != digits.data() + digits.size() || value == 0) return std::nullopt;
  return LogIndex{value};
}

// ---- segment header: magic u64 | version u32 | header length u32 | cluster id u64 | node id u32 | zero u32 |
//                      first index u64 | nonce u64 | checksum u64

void encode_segment_header(std::byte* out, const Identity& identity, LogIndex first_index,
                           std::uint64_t nonce) noexcept {
  store_le<std::uint64_t>(out, kSegmentMagic);
  store_le<std::uint32_t>(out + 8, kFormatVersion);
  store_le<std::uint32_t>(out + 12, static_cast<std::uint32_t>(kSegmentHeaderSize));
  store_le<std::uint64_t>(out + 16, identity.cluster_id);
  store_le<std::uint32_t>(out + 24, identity.node_id.value());
  store_le<std::uint32_t>(out + 28, 0);
  store_le<std::uint64_t>(out + 32, first_index.value());
  store_le<std::uint64_t>(out + 40, nonce);
  store_le<std::uint64_t>(out + 48, hash(out, 48));
}

std::optional<SegmentHeader> decode_segment_header(ByteSpan bytes, std::string& reason) {
  if (!preamble_ok(bytes, kSegmentHeaderSize, /*exact=*/false, kSegmentMagic, "log segment", reason))
    return std::nullopt;
  const std::byte* in = bytes.data();
  if (load_le<std::uint64_t>(in + 48) != hash(in, 48) || load_le<std::uint32_t>(in + 12) != kSegmentHeaderSize ||
      load_le<std::uint32_t>(in + 28) != 0) {
    reason = "segment header fails its checksum";
    return std::nullopt;
  }
  SegmentHeader header;
  header.identity.cluster_id = load_le<std::uint64_t>(in + 16);
  header.identity.node_id = NodeId{load_le<std::uint32_t>(in + 24)};
  header.first_index = LogIndex{load_le<std::uint64_t>(in + 32)};
  header.nonce = load_le<std::uint64_t>(in + 40);
  return header;
}

// ---- record header: body length u32 | type u8 | zero u8[3] | index u64 | term u64 | durable_before u64 |
//                     entry checksum u64 | header checksum u64

void encode_record(std::byte* out, const consensus::Entry& entry) noexcept {
  const std::size_t body = entry.payload.size();
  store_le<std::uint32_t>(out, static_cast<std::uint32_t>(body));
  store_le<std::uint8_t>(out + 4, static_cast<std::uint8_t>(entry.type));
  std::memset(out + 5, 0, 3);
  store_le<std::uint64_t>(out + 8, entry.index.value());
  store_le<std::uint64_t>(out + 16, entry.term.value());
  store_le<std::uint64_t>(out + 24, 0);
  store_le<std::uint64_t>(out + 32, entry.checksum);
  store_le<std::uint64_t>(out + 40, 0);
  if (body != 0) std::memcpy(out + kRecordHeaderSize, entry.payload.data(), body);
  const std::size_t padding = record_size(body) - kRecordHeaderSize - body;
  if (padding != 0) std::memset(out + kRecordHeaderSize + body, 0, padding);
}

void seal_record(std::byte* header, LogIndex durable_before, std::uint64_t nonce) noexcept {
  store_le<std::uint64_t>(header + 24, durable_before.value());
  store_le<std::uint64_t>(header + 40, XXH3_64bits_withSeed(header, 40, nonce));
}

std::optional<RecordHeader> decode_record_header(ByteSpan bytes, std::uint64_t nonce) noexcept {
  if (bytes.size() < kRecordHeaderSize) return std::nullopt;
  const std::byte* in = bytes.data();
  if (load_le<std::uint64_t>(in + 40) != XXH3_64bits_withSeed(in, 40, nonce)) return std::nullopt;
  if (in[5] != std::byte{0} || in[6] != std::byte{0} || in[7] != std::byte{0}) return std::nullopt;
  RecordHeader header;
  header.body_length = load_le<std::uint32_t>(in);
  header.type = static_cast<consensus::EntryType>(load_le<std::uint8_t>(in + 4));
  if (!consensus::is_known(header.type)) return std::nullopt;
  header.index = LogIndex{load_le<std::uint64_t>(in + 8)};
  header.term = Term{load_le<std::uint64_t>(in + 16)};
  header.durable_before = LogIndex{load_le<std::uint64_t>(in + 24)};
  header.entry_checksum = load_le<std::uint64_t>(in + 32);
  if (header.index == LogIndex{0} || header.term == Term{0}) return std::nullopt;
  return header;
}

bool body_ok(const RecordHeader& header, ByteSpan body) noexcept {
  return body.size() == header.body_length &&
         consensus::compute_checksum(header.index, header.term, header.type, body) == header.entry_checksum;
}

Result<RecordHeader, std::string> check_record(ByteSpan segment, std::uint64_t offset, std::uint64_t nonce,
                                               LogIndex expected, Term floor) {
  const std::uint64_t left = offset < segment.size() ? segment.size() - offset : 0;
  if (left < kRecordHeaderSize) return unexpected(fmt::format("{} bytes are left, too few for a record header", left));
  const ByteSpan header_bytes = segment.subspan(offset, kRecordHeaderSize);
  const auto header = decode_record_header(header_bytes, nonce);
  if (!header) {
    const bool zeros =
        std::all_of(header_bytes.begin(), header_bytes.end(), [](std::byte b) { return b == std::byte{0}; });
    return unexpected(std::string(zeros ? "the record header is zeros" : "the record header fails its checksum"));
  }
  if (header->index != expected)
    return unexpected(
        fmt::format("the record holds index {} where index {} belongs", header->index.value(), expected.value()));
  if (header->term < floor)
    return unexpected(fmt::format("the record's term {} is below the previous record's term {}", header->term.value(),
                                  floor.value()));
  if (record_size(header->body_length) > left)
    return unexpected(fmt::format("the record's body of {} bytes runs past the end of the file", header->body_length));
  if (!body_ok(*header, segment.subspan(offset + kRecordHeaderSize, header->body_length)))
    return unexpected(std::string("the record's body fails its checksum"));
  return *header;
}

RecordsFound find_records_after(ByteSpan segment, std::uint64_t from, std::uint64_t nonce, LogIndex damaged) {
  RecordsFound found;
  std::uint64_t offset = (from + kRecordAlignment - 1) / kRecordAlignment * kRecordAlignment;
  while (offset + kRecordHeaderSize <= segment.size()) {
    const auto header = decode_record_header(segment.subspan(offset, kRecordHeaderSize), nonce);
    if (header && record_size(header->body_length) <= segment.size() - offset &&
        body_ok(*header, segment.subspan(offset + kRecordHeaderSize, header->body_length))) {
      if (found.records == 0 || header->index < found.lowest) found.lowest = header->index;
      if (found.records == 0 || header->index > found.highest) found.highest = header->index;
      ++found.records;
      if (header->index > damaged && header->durable_before < header->index &&
          header->durable_before > found.durable_claim) {
        found.durable_claim = header->durable_before;
        found.claim_offset = offset;
      }
      offset += record_size(header->body_length);
    } else {
      offset += kRecordAlignment;
    }
  }
  return found;
}

// ---- metadata: magic u64 | version u32 | length u32 | cluster id u64 | node id u32 | has vote u32 | term u64 |
//                voted for u32 | standing u32 | checksum u64

void encode_metadata(std::byte* out, const Identity& identity, const consensus::HardState& state) noexcept {
  store_le<std::uint64_t>(out, kMetadataMagic);
  store_le<std::uint32_t>(out + 8, kFormatVersion);
  store_le<std::uint32_t>(out + 12, static_cast<std::uint32_t>(kMetadataSize));
  store_le<std::uint64_t>(out + 16, identity.cluster_id);
  store_le<std::uint32_t>(out + 24, identity.node_id.value());
  store_le<std::uint32_t>(out + 28, state.voted_for ? 1 : 0);
  store_le<std::uint64_t>(out + 32, state.term.value());
  store_le<std::uint32_t>(out + 40, state.voted_for ? state.voted_for->value() : 0);
  store_le<std::uint32_t>(out + 44, static_cast<std::uint32_t>(state.standing));
  store_le<std::uint64_t>(out + 48, hash(out, 48));
}

std::optional<Metadata> decode_metadata(ByteSpan bytes, std::string& reason) {
  if (!preamble_ok(bytes, kMetadataSize, /*exact=*/true, kMetadataMagic, "metadata file", reason)) return std::nullopt;
  const std::byte* in = bytes.data();
  const auto has_vote = load_le<std::uint32_t>(in + 28);
  if (load_le<std::uint64_t>(in + 48) != hash(in, 48) || load_le<std::uint32_t>(in + 12) != kMetadataSize ||
      has_vote > 1 || load_le<std::uint32_t>(in + 44) > static_cast<std::uint32_t>(consensus::Standing::recovering)) {
    reason = "metadata file fails its checksum";
    return std::nullopt;
  }
  Metadata metadata;
  metadata.identity.cluster_id = load_le<std::uint64_t>(in + 16);
  metadata.identity.node_id = NodeId{load_le<std::uint32_t>(in + 24)};
  metadata.hard_state.term = Term{load_le<std::uint64_t>(in + 32)};
  if (has_vote == 1) metadata.hard_state.voted_for = NodeId{load_le<std::uint32_t>(in + 40)};
  metadata.hard_state.standing = static_cast<consensus::Standing>(load_le<std::uint32_t>(in + 44));
  return metadata;
}

// ---- base file: magic u64 | version u32 | length u32 | cluster id u64 | node id u32 | resetting u32 | index u64 |
//                 term u64 | checksum u64

void encode_base(std::byte* out, const Identity& identity, const consensus::LogBase& base, bool resetting) noexcept {
  store_le<std::uint64_t>(out, kBaseMagic);
  store_le<std::uint32_t>(out + 8, kFormatVersion);
  store_le<std::uint32_t>(out + 12, static_cast<std::uint32_t>(kBaseFileSize));
  store_le<std::uint64_t>(out + 16, identity.cluster_id);
  store_le<std::uint32_t>(out + 24, identity.node_id.value());
  store_le<std::uint32_t>(out + 28, resetting ? 1 : 0);
  store_le<std::uint64_t>(out + 32, base.index.value());
  store_le<std::uint64_t>(out + 40, base.term.value());
  store_le<std::uint64_t>(out + 48, hash(out, 48));
}

std::optional<BaseFile> decode_base(ByteSpan bytes, std::string& reason) {
  if (!preamble_ok(bytes, kBaseFileSize, /*exact=*/true, kBaseMagic, "base file", reason)) return std::nullopt;
  const std::byte* in = bytes.data();
  const auto resetting = load_le<std::uint32_t>(in + 28);
  if (load_le<std::uint64_t>(in + 48) != hash(in, 48) || load_le<std::uint32_t>(in + 12) != kBaseFileSize ||
      resetting > 1) {
    reason = "base file fails its checksum";
    return std::nullopt;
  }
  BaseFile file;
  file.identity.cluster_id = load_le<std::uint64_t>(in + 16);
  file.identity.node_id = NodeId{load_le<std::uint32_t>(in + 24)};
  file.resetting = resetting == 1;
  file.base.index = LogIndex{load_le<std::uint64_t>(in + 32)};
  file.base.term = Term{load_le<std::uint64_t>(in + 40)};
  // Index 0 has term 0: another pair there is no base this code writes.
  if (file.base.index == LogIndex{0} && file.base.term != Term{0}) {
    reason = fmt::format("base file names term {} at index 0", file.base.term.value());
    return std::nullopt;
  }
  return file;
}

// ---- machine file: magic u64 | version u32 | length u32 | kernel boot id 16 bytes | checksum u64

void encode_machine_boot(std::byte* out, const MachineBoot& boot) noexcept {
  store_le<std::uint64_t>(out, kMachineMagic);
  store_le<std::uint32_t>(out + 8, kFormatVersion);
  store_le<std::uint32_t>(out + 12, static_cast<std::uint32_t>(kMachineFileSize));
  std::copy(boot.begin(), boot.end(), out + 16);
  store_le<std::uint64_t>(out + 32, hash(out, 32));
}

std::optional<MachineBoot> decode_machine_boot(ByteSpan bytes, std::string& reason) {
  if (!preamble_ok(bytes, kMachineFileSize, /*exact=*/true, kMachineMagic, "machine file", reason)) return std::nullopt;
  const std::byte* in = bytes.data();
  if (load_le<std::uint64_t>(in + 32) != hash(in, 32) || load_le<std::uint32_t>(in + 12) != kMachineFileSize) {
    reason = "machine file fails its checksum";
    return std::nullopt;
  }
  MachineBoot boot{};
  std::copy(in + 16, in + 32, boot.begin());
  return boot;
}

}  // namespace cohort::storage
