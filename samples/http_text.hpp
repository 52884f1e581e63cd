// http_text.hpp: HTTP/1.1's rules for the text of a message head (RFC
// 9112), shared by the server of http_serve.hpp and the client https_get.
#pragma once

#include <cstddef>
#include <string_view>

namespace http {
namespace {  // internal linkage: see http_serve.hpp

using std::string_view;

// HTTP names and tokens are case-insensitive ASCII: comparing against a
// lowercase literal byte by byte needs no lowercased copy.
bool iequals(string_view s, string_view lower) {
  if (s.size() != lower.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i] >= 'A' && s[i] <= 'Z' ? char(s[i] - 'A' + 'a') : s[i];
    if (c != lower[i]) return false;
  }
  return true;
}

string_view trim(string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// chomp drops the line's "\n" and the "\r" before it (a bare "\n" is
// accepted, as RFC 9112 allows).
string_view chomp(string_view line) {
  line.remove_suffix(1);
  if (line.ends_with('\r')) line.remove_suffix(1);
  return line;
}

}  // namespace
}  // namespace http
