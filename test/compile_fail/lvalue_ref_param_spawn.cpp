// Must not compile: spawn() of a function taking `std::string&`, passed a
// plain lvalue (std::thread refuses the same).
#include <fiberloop/fiberloop.hpp>
#include <string>

void append(std::string& s) { s += "x"; }

int main() {
  return fiberloop::run([] {
    std::string s;
    fiberloop::spawn(append, s);
    return 0;
  });
}
