#include "symbols.hpp"

#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>

namespace fiberloop::detail {

Symbolizer::~Symbolizer() { std::free(demangled_); }

Symbol Symbolizer::lookup(void* return_address) {
  if (known_count_ * 2 >= known_.size()) grow();
  Known* k = slot_for(return_address);
  if (!k->address) {
    Symbol symbol = resolve(return_address);
    k->address = return_address;
    k->symbol = symbol;
    k->name = npos;
    if (symbol.function) {
      k->name = names_.size();
      names_.append(symbol.function).push_back('\0');
    }
    ++known_count_;
  }
  Symbol symbol = k->symbol;
  symbol.function = k->name == npos ? nullptr : names_.data() + k->name;
  return symbol;
}

Symbolizer::Known* Symbolizer::slot_for(const void* address) {
  std::size_t mask = known_.size() - 1;
  // Return addresses are spread over the low bits well enough once the
  // alignment's zeros are mixed in.
  auto h = reinterpret_cast<std::uintptr_t>(address);
  std::size_t i = (h ^ (h >> 12)) * 0x9E3779B97F4A7C15ull >> 20 & mask;
  while (known_[i].address && known_[i].address != address) i = (i + 1) & mask;
  return &known_[i];
}

void Symbolizer::grow() {
  std::vector<Known> old = std::move(known_);
  known_.assign(old.empty() ? 256 : old.size() * 2, Known{});
  for (const Known& k : old) {
    if (k.address) *slot_for(k.address) = k;
  }
}

Symbol Symbolizer::resolve(void* return_address) {
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
