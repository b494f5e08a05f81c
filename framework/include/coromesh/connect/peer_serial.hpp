#pragma once

// The peer certificate's serial number as Consul writes it ("0b:1a:…", lower-case hex
// pairs): what /v1/agent/connect/authorize takes as ClientCertSerial. Empty without a
// peer certificate. Any thread (reads the SSL object only).

#include <openssl/ssl.h>

#include <string>

namespace coromesh::connect {

std::string peer_serial(SSL* ssl);

}  // namespace coromesh::connect
