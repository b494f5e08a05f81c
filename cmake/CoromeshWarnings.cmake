# Project-wide warning policy; applied per target so that consumers of the installed
# package do not inherit our -Werror.
function(coromesh_target_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Wunused -Woverloaded-virtual -Wconversion -Wsign-conversion
    -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
    # Designated initializers that leave defaulted members out are how coromesh
    # options and QoS policies are meant to be written.
    -Wno-missing-field-initializers
    # GCC 12 misreads Asio's coroutine-frame allocator as a mismatched new/delete.
    -Wno-mismatched-new-delete)
  if(COROMESH_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
