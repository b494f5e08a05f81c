// The one translation unit that compiles Boost.Asio (and its SSL layer); see
// BOOST_ASIO_SEPARATE_COMPILATION in framework/CMakeLists.txt.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
