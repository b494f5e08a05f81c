#include "server_fixture.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/describe.hpp>

#include "coromesh/http/binding.hpp"
#include "coromesh/http/error.hpp"

namespace coromesh::http::testing {

namespace asio = boost::asio;

namespace {
struct SumArgs {
  std::int64_t l = 0;
  std::int64_t r = 0;
};
BOOST_DESCRIBE_STRUCT(SumArgs, (), (l, r))

struct GreetArgs {
  std::string name;
};
BOOST_DESCRIBE_STRUCT(GreetArgs, (), (name))

Response text(std::string body) {
  Response res{Status::ok, 11};
  res.set(Field::content_type, "text/plain");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}
}  // namespace

ServerFixture::ServerFixture(ServerLimits limits, std::size_t threads, ServerObserver* observer)
    : pool_(threads), gate_(pool_.context(0), asio::steady_timer::time_point::max()) {
  router_.add(Verb::get, "/hello", "hello",
              [](RequestContext&) -> asio::awaitable<Response> { co_return text("hello"); });
  router_.add(Verb::get, "/items/{id}", "item",
              [](RequestContext& ctx) -> asio::awaitable<Response> {
                co_return text("item " + std::string(ctx.path_param("id")));
              });
  router_.add(Verb::post, "/echo", "echo", [](RequestContext& ctx) -> asio::awaitable<Response> {
    co_return text(ctx.request.body());
  });
  router_.add(Verb::get, "/sum", "sum", [](RequestContext& ctx) -> asio::awaitable<Response> {
    auto args = bind_query<SumArgs>(ctx.query);
    co_return text(std::to_string(args.l + args.r));
  });
  router_.add(Verb::get, "/slow", "slow", [this](RequestContext& ctx) -> asio::awaitable<Response> {
    ++slow_started;
    auto ms = bind_query<SumArgs>(std::string(ctx.query) + "&r=0").l;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::milliseconds(ms));
    try {
      co_await timer.async_wait(asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) {
        ++slow_cancelled;
      }
      throw;
    }
    ++slow_finished;
    co_return text("slept");
  });
  router_.add(Verb::get, "/stubborn", "stubborn",
              [this](RequestContext& ctx) -> asio::awaitable<Response> {
                ++stubborn_started;
                auto ms = bind_query<SumArgs>(std::string(ctx.query) + "&r=0").l;
                asio::steady_timer timer(co_await asio::this_coro::executor);
                timer.expires_after(std::chrono::milliseconds(ms));
                // No cancellation slot: the wait ignores the cancellation of the request.
                co_await timer.async_wait(asio::bind_cancellation_slot(
                    asio::cancellation_slot(), asio::as_tuple(asio::use_awaitable)));
                ++stubborn_finished;
                co_return text("done anyway");
              });
  router_.add(Verb::get, "/gated", "gated", [this](RequestContext&) -> asio::awaitable<Response> {
    ++gated_started;
    co_await gate_.async_wait(asio::use_awaitable);  // throws operation_aborted when cancelled
    co_return text("unreachable");
  });
  router_.add(Verb::get, "/greet", "greet", [](RequestContext& ctx) -> asio::awaitable<Response> {
    // A handler that echoes a typed parameter into a header, as a careless one might.
    auto args = bind_query<GreetArgs>(ctx.query);
    auto res = text("hi");
    res.set("X-Greeting", args.name);
    co_return res;
  });
  router_.add(Verb::get, "/throw", "throw", [](RequestContext&) -> asio::awaitable<Response> {
    throw std::runtime_error("secret internal detail");
    co_return text("unreachable");
  });
  router_.add(Verb::get, "/throw-other", "throw_other",
              [](RequestContext&) -> asio::awaitable<Response> {
                throw 42;  // NOLINT: a handler throwing something that is not an exception
                co_return text("unreachable");
              });
  router_.add(Verb::get, "/error", "error", [](RequestContext&) -> asio::awaitable<Response> {
    throw HttpError(Status::conflict, "already_there", "the item exists");
    co_return text("unreachable");
  });
  server_ = std::make_unique<Server>(pool_, router_, limits, observer);
  server_->listen("127.0.0.1", 0);
  server_->start();
  pool_.start();
}

ServerFixture::~ServerFixture() {
  if (!stopped_) {
    shutdown(std::chrono::seconds(2));
  }
}

std::size_t ServerFixture::shutdown(std::chrono::milliseconds grace) {
  stopped_ = true;
  server_->stop_accepting();
  auto cut = asio::co_spawn(pool_.executor(0), server_->drain(grace), asio::use_future);
  auto result = cut.get();
  pool_.stop();
  pool_.join();
  return result;
}

void ServerFixture::cancel_gate() {
  asio::post(gate_.get_executor(), [this] { gate_.cancel(); });
}

coromesh::testing::FetchResult ServerFixture::get(const std::string& target) {
  return coromesh::testing::http_fetch("127.0.0.1", port(), target);
}

coromesh::testing::FetchResult ServerFixture::send(const std::string& method,
                                                   const std::string& target,
                                                   const std::string& body) {
  coromesh::testing::FetchOptions options;
  options.method = method;
  options.body = body;
  return coromesh::testing::http_fetch("127.0.0.1", port(), target, options);
}

std::string ServerFixture::raw(const std::string& bytes, std::chrono::milliseconds timeout) {
  return coromesh::testing::raw_exchange("127.0.0.1", port(), bytes, timeout);
}

}  // namespace coromesh::http::testing
