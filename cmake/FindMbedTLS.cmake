# Finds mbed TLS 2.28 as Debian ships it (libmbedtls-dev has no .pc file and
# no CMake config), and defines imported targets MbedTLS::mbedtls,
# MbedTLS::mbedx509 and MbedTLS::mbedcrypto. Set MBEDTLS_STATIC=ON to prefer
# the static archives (the gateway footprint is measured that way).
find_path(MBEDTLS_INCLUDE_DIR mbedtls/ssl.h)
if(MBEDTLS_STATIC)
  set(_mbed_names_tls libmbedtls.a mbedtls)
  set(_mbed_names_x509 libmbedx509.a mbedx509)
  set(_mbed_names_crypto libmbedcrypto.a mbedcrypto)
else()
  set(_mbed_names_tls mbedtls)
  set(_mbed_names_x509 mbedx509)
  set(_mbed_names_crypto mbedcrypto)
endif()
find_library(MBEDTLS_TLS_LIBRARY NAMES ${_mbed_names_tls})
find_library(MBEDTLS_X509_LIBRARY NAMES ${_mbed_names_x509})
find_library(MBEDTLS_CRYPTO_LIBRARY NAMES ${_mbed_names_crypto})
if(MBEDTLS_INCLUDE_DIR AND EXISTS "${MBEDTLS_INCLUDE_DIR}/mbedtls/version.h")
  file(STRINGS "${MBEDTLS_INCLUDE_DIR}/mbedtls/version.h" _mbed_ver
       REGEX "^#define[ \t]+MBEDTLS_VERSION_STRING[ \t]+\"[0-9.]+\"")
  string(REGEX REPLACE ".*\"([0-9.]+)\".*" "\\1" MBEDTLS_VERSION "${_mbed_ver}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MbedTLS
  REQUIRED_VARS MBEDTLS_INCLUDE_DIR MBEDTLS_TLS_LIBRARY MBEDTLS_X509_LIBRARY MBEDTLS_CRYPTO_LIBRARY
  VERSION_VAR MBEDTLS_VERSION)
if(MbedTLS_FOUND AND NOT TARGET MbedTLS::mbedcrypto)
  add_library(MbedTLS::mbedcrypto UNKNOWN IMPORTED)
  set_target_properties(MbedTLS::mbedcrypto PROPERTIES
    IMPORTED_LOCATION "${MBEDTLS_CRYPTO_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MBEDTLS_INCLUDE_DIR}")
  add_library(MbedTLS::mbedx509 UNKNOWN IMPORTED)
  set_target_properties(MbedTLS::mbedx509 PROPERTIES
    IMPORTED_LOCATION "${MBEDTLS_X509_LIBRARY}"
    INTERFACE_LINK_LIBRARIES MbedTLS::mbedcrypto)
  add_library(MbedTLS::mbedtls UNKNOWN IMPORTED)
  set_target_properties(MbedTLS::mbedtls PROPERTIES
    IMPORTED_LOCATION "${MBEDTLS_TLS_LIBRARY}"
    INTERFACE_LINK_LIBRARIES MbedTLS::mbedx509)
endif()
