#pragma once

// Internal: the watch a connection keeps on its client while a handler runs, so that a
// client that hangs up (closes or resets the connection) stops the handler instead of
// leaving it to run to its end for nobody, as Go's net/http cancels the request's context
// and Envoy resets the upstream stream.
//
// How: an asynchronous wait for readability on the raw TCP socket (never a read, and
// never the TLS stream: what arrives stays for the request loop), and on each wake-up a
// non-blocking poll(POLLRDHUP) asking the kernel what arrived (http::peer_sign, shared with
// the sidecar's http mode):
//   reset, or both directions shut (POLLERR, POLLHUP)  -> hung up
//   end of stream (FIN, POLLRDHUP)                     -> hung up, as Go and nginx take
//       it, unless the client pipelines (a request arrived behind another one, on this
//       connection so far) or, over plain TCP, bytes of a request wait in the kernel: a
//       client that sent its requests and half-closed (`printf ... | nc -N`) still wants
//       every answer. Of such a client only a reset is taken for a hang-up.
//   bytes only                                         -> plain TCP: a pipelined request,
//       the client is there; the watch ends. TLS: any record (a request, or the
//       close_notify a leaving client sends before its FIN); the watch goes on
// A hang-up is the drain's own path: `hung_up` is set and the connection's cancellation
// signal emits terminal cancellation, which reaches the operation the handler awaits
// (the QoS chain then counts the call `cancelled`).
//
// Lifetimes: the pending wait's handler holds the Connection (so the socket and the
// signals it touches) by shared_ptr, and does nothing unless it belongs to the request
// whose handler still runs (`watch_generation`, `watching`). stop_hang_up_watch()
// cancels the wait through its own cancellation slot; its completion then only drops
// its reference. A drain or the watchdog closing the socket completes it likewise
// (operation_aborted), and an io_context destroyed with it pending destroys the handler
// unrun, which releases the Connection like any abandoned coroutine frame.
//
// Threading: both functions on the connection's own io thread only (one thread per
// io_context), where the wait's handler also runs.

#include <memory>

#include "server_state.hpp"

namespace coromesh::http::detail {

// Starts watching `connection`'s client for the request whose handler runs now; called
// by the connection's watchdog (Server::State::watch) at its first wake-up while a
// handler runs, so a handler answered sooner is never watched, and a hang-up is seen
// within a watchdog period or two (a quarter of the shortest read timeout, 2.5 s by
// default). When the client has already hung up, `hung_up` is set and the cancellation
// emitted at once: the edge-triggered reactor has consumed that event, and a wait started
// now would never wake for it. Connection::pipelining must already say whether requests
// were waiting behind this one when its handler started.
void start_hang_up_watch(const std::shared_ptr<Connection>& connection);

// Ends the watch once the handler has finished. Safe to call when none is pending.
void stop_hang_up_watch(Connection& connection);

}  // namespace coromesh::http::detail
