#pragma once

// What the peer of a connection has done since the socket was last read, asked of the
// kernel without reading or blocking: one poll(POLLIN | POLLRDHUP, timeout 0), and over
// plain TCP a recv(MSG_PEEK) when the peer has half-closed. The judgement behind noticing
// that a client hangs up while its request is served (Go's net/http and nginx take the
// client's end of stream for a hang-up too), shared by the framework's HTTP server
// (http/hang_up_watch.hpp) and the sidecar's http mode (proxy/src/http_exchange.hpp):
//
//   reset, or both directions shut (POLLERR, POLLHUP)  -> hung_up
//   end of stream (FIN, POLLRDHUP)                     -> hung_up, unless the client
//       pipelines (`pipelining`: a request came behind the one served) or, over plain
//       TCP, bytes wait in the kernel ahead of the FIN (a request it sent before it
//       half-closed, `printf ... | nc -N`): such a client still wants its answers -> bytes
//   bytes only                                         -> bytes (plain TCP: a pipelined
//       request, the client is there; TLS: any record, a request or the close_notify a
//       leaving client sends before its FIN: look again at the next wake-up)
//   nothing                                            -> nothing
//
// Threads: any; it only reads the socket's state.

#include <cstdint>

namespace coromesh::http {

enum class PeerSign : std::uint8_t { nothing, bytes, hung_up };

// `fd`: the connected TCP socket (under any TLS layer). `tls`: whether TLS runs over it.
PeerSign peer_sign(int fd, bool tls, bool pipelining) noexcept;

}  // namespace coromesh::http
