#include "coromesh/http/peer_sign.hpp"

#include <poll.h>
#include <sys/socket.h>

namespace coromesh::http {

PeerSign peer_sign(int fd, bool tls, bool pipelining) noexcept {
  pollfd watched{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&watched, 1, 0) <= 0) {
    return PeerSign::nothing;  // EINTR included: the next look asks again
  }
  if ((watched.revents & (POLLERR | POLLHUP)) != 0) {
    return PeerSign::hung_up;
  }
  if ((watched.revents & POLLRDHUP) != 0) {
    if (pipelining) {
      return PeerSign::bytes;  // a half-close behind the client's requests
    }
    if (!tls) {
      // Over plain TCP, bytes ahead of the FIN are a pipelined request: the client
      // half-closed behind it. (Over TLS they are more likely its close_notify.)
      char byte = 0;
      if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        return PeerSign::bytes;
      }
    }
    return PeerSign::hung_up;
  }
  return (watched.revents & POLLIN) != 0 ? PeerSign::bytes : PeerSign::nothing;
}

}  // namespace coromesh::http
