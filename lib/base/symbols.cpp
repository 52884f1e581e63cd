#include "symbols.hpp"

#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdlib>

namespace fiberloop::detail {

Symbolizer::~Symbolizer() { std::free(demangled_); }

Symbol Symbolizer::lookup(void* return_address) {
  Symbol symbol;
  // The call's own address: a return address may already lie in the next
  // function when the call was the last instruction (a noreturn callee).
  auto* at = static_cast<char*>(return_address) - 1;
  Dl_info info{};
  if (!dladdr(at, &info)) return symbol;
  symbol.object = info.dli_fname;
  symbol.object_base = info.dli_fbase;
  const char* mangled = info.dli_sname;
  if (mangled) {
    symbol.offset = static_cast<std::size_t>(static_cast<char*>(return_address) -
                                             static_cast<char*>(info.dli_saddr));
  } else {
    mangled = elf_.function_at(info.dli_fname, info.dli_fbase, at, &symbol.offset);
    ++symbol.offset;  // function_at() was given the call's address, one before the return
  }
  if (mangled) symbol.function = demangle(mangled);
  return symbol;
}

const char* Symbolizer::demangle(const char* mangled) {
  int status = 0;
  std::size_t capacity = capacity_;
  // __cxa_demangle grows the buffer it is given with realloc(): kept.
  char* out = abi::__cxa_demangle(mangled, demangled_, &capacity, &status);
  if (status != 0 || !out) return mangled;  // a C name, or not a C++ one
  demangled_ = out;
  capacity_ = capacity;
  return out;
}

}  // namespace fiberloop::detail
