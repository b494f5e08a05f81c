# Sources of the consul module (see framework/CMakeLists.txt).
