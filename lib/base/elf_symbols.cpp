#include "elf_symbols.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace fiberloop::detail {

ElfSymbols::~ElfSymbols() {
  for (Object& o : objects_) {
    if (o.map) ::munmap(o.map, o.map_size);
  }
}

ElfSymbols::Object& ElfSymbols::load(const char* path) {
  for (Object& o : objects_) {
    if (o.path == path) return o;
  }
  Object& object = objects_.emplace_back();
  object.path = path;
  read(object);
  return object;
}

// read(object) maps the file and collects its function symbols; a file it
// cannot read, or one that is not a 64-bit ELF with a .symtab, gives none.
void ElfSymbols::read(Object& object) {
  int fd = ::open(object.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    ::close(fd);
    return;
  }
  auto size = static_cast<std::size_t>(st.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return;
  object.map = map;
  object.map_size = size;
  auto* bytes = static_cast<const unsigned char*>(map);
  auto* header = reinterpret_cast<const Elf64_Ehdr*>(bytes);
  if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 ||
      header->e_ident[EI_CLASS] != ELFCLASS64 || header->e_shentsize != sizeof(Elf64_Shdr) ||
      header->e_shoff + std::size_t{header->e_shnum} * sizeof(Elf64_Shdr) > size)
    return;
  object.absolute = header->e_type == ET_EXEC;
  auto* sections = reinterpret_cast<const Elf64_Shdr*>(bytes + header->e_shoff);
  for (unsigned i = 0; i < header->e_shnum; ++i) {
    const Elf64_Shdr& symtab = sections[i];
    if (symtab.sh_type != SHT_SYMTAB || symtab.sh_link >= header->e_shnum) continue;
    const Elf64_Shdr& strtab = sections[symtab.sh_link];
    if (symtab.sh_offset + symtab.sh_size > size || strtab.sh_offset + strtab.sh_size > size)
      return;
    object.strings = reinterpret_cast<const char*>(bytes + strtab.sh_offset);
    object.strings_size = strtab.sh_size;
    auto* symbols = reinterpret_cast<const Elf64_Sym*>(bytes + symtab.sh_offset);
    std::size_t count = symtab.sh_size / sizeof(Elf64_Sym);
    for (std::size_t s = 0; s < count; ++s) {
      const Elf64_Sym& sym = symbols[s];
      if (ELF64_ST_TYPE(sym.st_info) == STT_FUNC && sym.st_value && sym.st_name < strtab.sh_size)
        object.functions.push_back({sym.st_value, sym.st_size, sym.st_name});
    }
    std::sort(object.functions.begin(), object.functions.end(),
              [](const Function& a, const Function& b) { return a.start < b.start; });
    return;
  }
}

const char* ElfSymbols::function_at(const char* path, const void* base, const void* address,
                                    std::size_t* offset) {
  if (!path || !*path) return nullptr;
  Object& object = load(path);
  if (object.functions.empty()) return nullptr;
  auto at = reinterpret_cast<std::uintptr_t>(address);
  std::uint64_t key = object.absolute ? at : at - reinterpret_cast<std::uintptr_t>(base);
  auto it = std::upper_bound(object.functions.begin(), object.functions.end(), key,
                             [](std::uint64_t k, const Function& f) { return k < f.start; });
  if (it == object.functions.begin()) return nullptr;
  --it;
  if (key >= it->start + std::max<std::uint64_t>(it->size, 1)) return nullptr;
  *offset = static_cast<std::size_t>(key - it->start);
  return object.strings + it->name;
}

}  // namespace fiberloop::detail
