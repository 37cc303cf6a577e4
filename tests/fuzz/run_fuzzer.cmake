# Runs a libFuzzer binary on a fresh copy of its seed corpus (ctest's fuzz.* tests).
#   cmake -DFUZZER=<binary> -DSEEDS=<seed dir> -DWORK=<copy dir> -DARGS=<;-separated flags> -P run_fuzzer.cmake
foreach(variable FUZZER SEEDS WORK)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${variable}=... is required")
  endif()
endforeach()
file(MAKE_DIRECTORY ${WORK})
file(COPY ${SEEDS}/ DESTINATION ${WORK})
execute_process(COMMAND ${FUZZER} ${ARGS} ${WORK} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${result}); libFuzzer wrote the crashing input (crash-*) to the working directory")
endif()
