# xxhash: Debian's libxxhash-dev ships the library but no CMake package, so Cohort makes the imported target itself,
# under the name xxHash's own CMake package gives it. Cohort's build and its installed package config
# (CohortConfig.cmake) both include this file: the exported libraries then name the target, not a path found on the
# machine that built them. Leaves xxHash::xxhash undefined if the library is not found; the includer says so.
if(NOT TARGET xxHash::xxhash)
  find_library(XXHASH_LIBRARY xxhash)
  if(XXHASH_LIBRARY)
    add_library(xxHash::xxhash UNKNOWN IMPORTED)
    set_target_properties(xxHash::xxhash PROPERTIES IMPORTED_LOCATION "${XXHASH_LIBRARY}")
  endif()
endif()
