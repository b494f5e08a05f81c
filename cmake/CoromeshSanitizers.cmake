# COROMESH_SANITIZER=address -> ASan + UBSan; COROMESH_SANITIZER=thread -> TSan.
# Applied globally so that every object, including tests, is instrumented alike.
# COROMESH_SANITIZER_LINK_FLAGS is what a program linking the instrumented library needs
# (the out-of-tree consumer test passes it on).
set(COROMESH_SANITIZER_LINK_FLAGS "")
if(COROMESH_SANITIZER STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  # Every coroutine frame from the heap, freed when it ends: Asio otherwise keeps freed
  # frames in a per-thread cache and hands them to the next coroutine, where ASan cannot
  # see a pointer into a finished frame being used. A frame is allocated and freed by its
  # own coroutine's code, so objects built without this (an out-of-tree consumer) mix
  # safely.
  add_compile_definitions(BOOST_ASIO_DISABLE_AWAITABLE_FRAME_RECYCLING)
  set(COROMESH_SANITIZER_LINK_FLAGS "-fsanitize=address,undefined")
elseif(COROMESH_SANITIZER STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC warns that TSan does not model atomic_thread_fence (used inside Asio); the
    # warning is about TSan's coverage, not our code, so it must not fail the build.
    # Clang has no such warning (and no -Wno-tsan flag).
    add_compile_options(-Wno-tsan)
  endif()
  add_link_options(-fsanitize=thread)
  set(COROMESH_SANITIZER_LINK_FLAGS "-fsanitize=thread")
elseif(NOT COROMESH_SANITIZER STREQUAL "")
  message(FATAL_ERROR "COROMESH_SANITIZER must be '', 'address' or 'thread', "
                      "not '${COROMESH_SANITIZER}'")
endif()
