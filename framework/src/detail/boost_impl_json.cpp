// Boost.JSON and Boost.URL are header-only here (Debian ships no compiled library for
// them in 1.81); this translation unit holds their one definition of each function.
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
