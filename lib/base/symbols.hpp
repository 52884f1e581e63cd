// symbols.hpp (private): return addresses turned into names for the dumps.
#pragma once

#include <cstddef>

#include "elf_symbols.hpp"

namespace fiberloop::detail {

// Symbol is one frame's name: the function (demangled), the address's
// offset into it and the object file; function is null where neither the
// dynamic symbol table nor a .symtab names it (a stripped object: addr2line
// with a debug file, the object and the address names it).
struct Symbol {
  const char* function = nullptr;
  std::size_t offset = 0;
  const char* object = nullptr;
  const void* object_base = nullptr;
  // object_offset(address) is address's offset in its object (addr2line's).
  std::size_t object_offset(const void* address) const noexcept {
    return static_cast<std::size_t>(static_cast<const char*>(address) -
                                    static_cast<const char*>(object_base));
  }
};

// Symbolizer names frames through dladdr(), then the object's .symtab
// (ElfSymbols), and the C++ ABI's demangler,
// into one buffer reused from frame to frame: a dump of many stacks
// allocates nothing per frame once the buffer is large enough. A Symbol's
// function is valid until the next lookup.
class Symbolizer {
 public:
  Symbolizer() = default;
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;
  ~Symbolizer();

  Symbol lookup(void* return_address);

 private:
  const char* demangle(const char* mangled);

  ElfSymbols elf_;
  char* demangled_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace fiberloop::detail
