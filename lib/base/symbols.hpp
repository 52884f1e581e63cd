// symbols.hpp (private): return addresses turned into names for the dumps.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

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
// (ElfSymbols), and the C++ ABI's demangler, and remembers each address
// it named: the stacks of many tasks share most of their return addresses,
// and dladdr() scans an object's whole symbol table. What it allocates
// grows with the distinct addresses, not the frames. A Symbol's function
// is valid until the next lookup.
class Symbolizer {
 public:
  Symbolizer() = default;
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;
  ~Symbolizer();

  Symbol lookup(void* return_address);

 private:
  // Known is one address named before; its name lies in names_ (an offset:
  // names_ grows), npos for none.
  struct Known {
    const void* address = nullptr;
    std::size_t name = 0;
    Symbol symbol;
  };
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  Symbol resolve(void* return_address);
  Known* slot_for(const void* address);
  void grow();
  const char* demangle(const char* mangled);

  std::vector<Known> known_;  // open addressing; a power of two long
  std::size_t known_count_ = 0;
  std::string names_;
  ElfSymbols elf_;
  char* demangled_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace fiberloop::detail
