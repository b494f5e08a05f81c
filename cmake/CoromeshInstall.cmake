# Installs the framework as a CMake package so that a service outside this tree can
# `find_package(coromesh)` and link `coromesh::framework`.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS coromesh_framework EXPORT coromeshTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY framework/include/coromesh DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT coromeshTargets NAMESPACE coromesh::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coromesh)

configure_package_config_file(cmake/coromeshConfig.cmake.in
  "${PROJECT_BINARY_DIR}/coromeshConfig.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coromesh)
write_basic_package_version_file("${PROJECT_BINARY_DIR}/coromeshConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/coromeshConfig.cmake"
              "${PROJECT_BINARY_DIR}/coromeshConfigVersion.cmake"
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/coromesh)
