// elf_symbols.hpp (private): names from an object file's full symbol table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fiberloop::detail {

// ElfSymbols reads the .symtab of the object files the dump's frames lie
// in: it names what dladdr() cannot, the functions the dynamic symbol table
// leaves out (static ones, lambdas, an executable's own without
// -rdynamic). A stripped object has no .symtab: its frames stay unnamed.
// Each object is read once (mapped, its functions sorted by address) and
// kept until the ElfSymbols goes: a dump of many stacks reads each file once.
class ElfSymbols {
 public:
  ElfSymbols() = default;
  ElfSymbols(const ElfSymbols&) = delete;
  ElfSymbols& operator=(const ElfSymbols&) = delete;
  ~ElfSymbols();

  // function_at(path, base, address) is the mangled name of the function of
  // the object at path (loaded at base) that holds address, and sets
  // *offset to address's offset in it; null when none is known.
  const char* function_at(const char* path, const void* base, const void* address,
                          std::size_t* offset);

 private:
  struct Function {
    std::uint64_t start, size;
    std::uint32_t name;  // offset in the string table
  };
  struct Object {
    std::string path;
    void* map = nullptr;
    std::size_t map_size = 0;
    const char* strings = nullptr;
    std::size_t strings_size = 0;
    bool absolute = false;  // ET_EXEC: symbol values are addresses, not offsets
    std::vector<Function> functions;
  };
  Object& load(const char* path);
  static void read(Object& object);

  std::vector<Object> objects_;
};

}  // namespace fiberloop::detail
