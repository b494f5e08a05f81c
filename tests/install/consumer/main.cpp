#include <coromesh/log/logger.hpp>
#include <coromesh/version.hpp>
#include <iostream>

int main() {
  coromesh::log::info("consumer.start", {{"framework", coromesh::version()}});
  std::cout << "consumer built against coromesh " << coromesh::version() << "\n";
  return 0;
}
