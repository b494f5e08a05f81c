# COROMESH_SANITIZER=address -> ASan + UBSan; COROMESH_SANITIZER=thread -> TSan.
# Applied globally so that every object, including tests, is instrumented alike.
if(COROMESH_SANITIZER STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(COROMESH_SANITIZER STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT COROMESH_SANITIZER STREQUAL "")
  message(FATAL_ERROR "COROMESH_SANITIZER must be '', 'address' or 'thread', "
                      "not '${COROMESH_SANITIZER}'")
endif()
