// The one translation unit that compiles Boost.Beast; see
// BOOST_BEAST_SEPARATE_COMPILATION in framework/CMakeLists.txt.
#include <boost/beast/src.hpp>
