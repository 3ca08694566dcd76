// Test helpers that build container bytes in memory: a tiny zip writer whose every header field
// can be bent (to craft each anomaly class), .npy files, and tar/gz/7z archives through
// libarchive's writer.
#pragma once

// Tests use designated initializers that leave most ZipMember fields at their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "scan/scan.h"

namespace airlock::testing {

inline void PutU16(std::string& s, std::uint16_t v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>(v >> 8);
}
inline void PutU32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void PutU64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}

inline std::string RawDeflate(const std::string& in, int level = 6) {
  z_stream zs{};
  deflateInit2(&zs, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline std::uint32_t Crc(const std::string& s) {
  return static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

struct ZipMember {
  std::string name;
  std::string data;  // uncompressed
  bool deflate = false;
  std::uint16_t flags = 0;
  std::optional<std::uint16_t> method;         // override (both headers)
  std::optional<std::string> local_name;       // local header name if different
  std::optional<std::uint32_t> crc;            // declared CRC (both headers)
  std::optional<std::uint32_t> local_crc;      // local header CRC only
  std::optional<std::uint32_t> declared_size;  // declared uncompressed size (both headers)
  std::optional<std::uint32_t> local_offset;   // central directory points here instead
  std::optional<std::string> stored_bytes;     // raw member bytes instead of data/deflate
  std::uint16_t version_made_by = 20;
  std::uint32_t external_attributes = 0;
  bool data_descriptor = false;  // write a PK\7\8 descriptor, zero local sizes
  bool omit_local = false;       // central entry only (point it elsewhere with local_offset)
};

struct ZipOptions {
  std::string prefix;                  // bytes before the archive (offsets not adjusted)
  std::string trailing;                // bytes after the end record
  std::optional<std::uint16_t> count;  // entry count written in the end record
  bool zip64 = false;                  // ZIP64 end record + locator and 0xffffffff fields
};

inline std::string WriteZip(const std::vector<ZipMember>& members, const ZipOptions& opt = {}) {
  std::string out = opt.prefix;
  std::string central;
  for (const ZipMember& m : members) {
    std::string payload =
        m.stored_bytes ? *m.stored_bytes : (m.deflate ? RawDeflate(m.data) : m.data);
    std::uint16_t method = m.method ? *m.method : (m.deflate ? 8 : 0);
    std::uint32_t crc = m.crc ? *m.crc : Crc(m.data);
    std::uint32_t usize =
        m.declared_size ? *m.declared_size : static_cast<std::uint32_t>(m.data.size());
    std::uint32_t csize = static_cast<std::uint32_t>(payload.size());
    std::uint16_t flags = m.flags | (m.data_descriptor ? 0x8 : 0);
    std::uint32_t offset = static_cast<std::uint32_t>(out.size());
    std::string lname = m.local_name ? *m.local_name : m.name;
    std::string local_extra;
    if (opt.zip64) {
      PutU16(local_extra, 1);
      PutU16(local_extra, 16);
      PutU64(local_extra, usize);
      PutU64(local_extra, csize);
    }
    if (m.omit_local) goto central_record;
    out += "PK\x03\x04";
    PutU16(out, opt.zip64 ? 45 : 20);
    PutU16(out, flags);
    PutU16(out, method);
    PutU32(out, 0);
    if (m.data_descriptor) {
      PutU32(out, 0);
      PutU32(out, 0);
      PutU32(out, 0);
    } else {
      PutU32(out, m.local_crc ? *m.local_crc : crc);
      PutU32(out, opt.zip64 ? 0xffffffff : csize);
      PutU32(out, opt.zip64 ? 0xffffffff : usize);
    }
    PutU16(out, static_cast<std::uint16_t>(lname.size()));
    PutU16(out, static_cast<std::uint16_t>(local_extra.size()));
    out += lname + local_extra + payload;
    if (m.data_descriptor) {
      out += "PK\x07\x08";
      PutU32(out, crc);
      PutU32(out, csize);
      PutU32(out, usize);
    }
  central_record:
    std::string extra;
    if (opt.zip64) {
      PutU16(extra, 1);
      PutU16(extra, 24);
      PutU64(extra, usize);
      PutU64(extra, csize);
      PutU64(extra, m.local_offset ? *m.local_offset : offset);
    }
    central += "PK\x01\x02";
    PutU16(central, m.version_made_by);
    PutU16(central, opt.zip64 ? 45 : 20);
    PutU16(central, flags);
    PutU16(central, method);
    PutU32(central, 0);
    PutU32(central, crc);
    PutU32(central, opt.zip64 ? 0xffffffff : csize);
    PutU32(central, opt.zip64 ? 0xffffffff : usize);
    PutU16(central, static_cast<std::uint16_t>(m.name.size()));
    PutU16(central, static_cast<std::uint16_t>(extra.size()));
    PutU16(central, 0);
    PutU16(central, 0);
    PutU16(central, 0);
    PutU32(central, m.external_attributes);
    PutU32(central, opt.zip64 ? 0xffffffff : (m.local_offset ? *m.local_offset : offset));
    central += m.name + extra;
  }
  std::uint64_t cd_offset = out.size();
  out += central;
  std::uint16_t count = opt.count ? *opt.count : static_cast<std::uint16_t>(members.size());
  if (opt.zip64) {
    std::uint64_t z_at = out.size();
    out += "PK\x06\x06";
    PutU64(out, 44);
    PutU16(out, 45);
    PutU16(out, 45);
    PutU32(out, 0);
    PutU32(out, 0);
    PutU64(out, count);
    PutU64(out, count);
    PutU64(out, central.size());
    PutU64(out, cd_offset);
    out += "PK\x06\x07";
    PutU32(out, 0);
    PutU64(out, z_at);
    PutU32(out, 1);
  }
  out += "PK\x05\x06";
  PutU16(out, 0);
  PutU16(out, 0);
  PutU16(out, opt.zip64 ? 0xffff : count);
  PutU16(out, opt.zip64 ? 0xffff : count);
  PutU32(out, opt.zip64 ? 0xffffffff : static_cast<std::uint32_t>(central.size()));
  PutU32(out, opt.zip64 ? 0xffffffff : static_cast<std::uint32_t>(cd_offset));
  PutU16(out, 0);
  out += opt.trailing;
  return out;
}

// A v1.0 .npy file with the given header dict text and payload (header padded to 64 bytes).
inline std::string WriteNpy(const std::string& dict, const std::string& payload, int major = 1) {
  std::string header = dict;
  std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  if (major == 1) {
    PutU16(out, static_cast<std::uint16_t>(header.size()));
  } else {
    PutU32(out, static_cast<std::uint32_t>(header.size()));
  }
  return out + header + payload;
}

struct ArchiveMember {
  std::string name;
  std::string data;
  std::string symlink;  // non-empty: a symlink entry to this target
};

// Writes an archive with libarchive: format is e.g. ARCHIVE_FORMAT_TAR_PAX_RESTRICTED or
// ARCHIVE_FORMAT_7ZIP; filter e.g. ARCHIVE_FILTER_GZIP or ARCHIVE_FILTER_NONE; raw=true writes a
// bare compressed stream of the first member's data.
inline std::string WriteArchive(const std::vector<ArchiveMember>& members, int format, int filter,
                                bool raw = false) {
  archive* a = archive_write_new();
  if (raw) {
    archive_write_set_format_raw(a);
  } else {
    archive_write_set_format(a, format);
  }
  archive_write_add_filter(a, filter);
  std::size_t capacity = 1 << 16;
  for (const auto& m : members) capacity += m.data.size() * 2 + 4096;
  std::string buf(capacity, '\0');
  std::size_t used = 0;
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  for (const auto& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    if (!m.symlink.empty()) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, m.symlink.c_str());
      archive_entry_set_size(e, 0);
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
    }
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    if (m.symlink.empty()) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  buf.resize(used);
  return buf;
}

inline scan::FileReport Scan(const std::string& bytes, const std::string& name,
                             const scan::ScanOptions& options = {}) {
  return scan::ScanBuffer(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()),
      name, options);
}

inline bool HasRule(const scan::FileReport& r, const std::string& rule) {
  for (const auto& f : r.findings)
    if (f.rule_id == rule) return true;
  return false;
}

inline const scan::Finding* FindRule(const scan::FileReport& r, const std::string& rule) {
  for (const auto& f : r.findings)
    if (f.rule_id == rule) return &f;
  return nullptr;
}

// Findings whose member chain is exactly `member`.
inline int CountMember(const scan::FileReport& r, const std::string& member) {
  int n = 0;
  for (const auto& f : r.findings) n += f.member == member;
  return n;
}

inline std::string Describe(const scan::FileReport& r) {
  std::string s = std::string(scan::VerdictName(r.verdict)) + " [" + r.format + "]";
  for (const auto& f : r.findings) {
    s += "\n  " + f.rule_id + " (" + std::string(scan::SeverityName(f.severity)) + ") [" +
         f.member + "] " + f.message;
  }
  return s;
}

// Member content that the scanner flags by content alone (a shebang script: code.executable,
// high), so tests can see which members were reached regardless of the pickle analyzer.
inline const std::string kMarker = "#!/bin/sh\necho marker\n";

}  // namespace airlock::testing
