# Installs the built gridflow into a scratch prefix and builds examples/ against it with find_package.
set(prefix ${BINARY_DIR}/package-test/prefix)
set(consumer ${BINARY_DIR}/package-test/consumer)
file(REMOVE_RECURSE ${BINARY_DIR}/package-test)

execute_process(COMMAND ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${prefix} RESULT_VARIABLE rc)
if(rc)
    message(FATAL_ERROR "cmake --install failed")
endif()
set(flags "")
if(SANITIZE)
    set(flags "-fsanitize=${SANITIZE}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples -B ${consumer} -G ${GENERATOR}
                        -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix}
                        "-DCMAKE_CXX_FLAGS=${flags}" "-DCMAKE_EXE_LINKER_FLAGS=${flags}"
                RESULT_VARIABLE rc)
if(rc)
    message(FATAL_ERROR "configuring the examples against the installed package failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer} RESULT_VARIABLE rc)
if(rc)
    message(FATAL_ERROR "building the examples against the installed package failed")
endif()
message(STATUS "find_package(gridflow) consumer built in ${consumer}")
