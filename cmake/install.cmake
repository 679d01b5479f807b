# Install rules and the .deb (CPack). Included by CMakeLists.txt after the targets exist.
#
# Layout (GNUInstallDirs; docs/operations.md, "Installing"):
#   bin/luahost                           the product binary (never luahost-test)
#   /etc/luahost/luahost.conf             config/luahost.conf with `scripts` naming the installed
#                                         scripts (PREFIX/etc/luahost for a prefix other than /usr)
#   share/luahost/scripts/                the user service's Lua: app.lua, routes/, policies/, lib/
#   share/luahost/examples/               examples/ (each with its README section)
#   lib/systemd/system/luahost.service    packaging/luahost.service.in with the installed paths
#   share/doc/luahost/                    README.md and docs/
# The host's own Lua modules (host/lua) are embedded in the binary (cmake/embed_lua.cmake), so the
# installed binary reads nothing from the source tree.
include(GNUInstallDirs)

install(TARGETS luahost RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Only the product's Lua: scripts/ also holds the shell tools (run, test, db, fuzz, lib.sh).
set(LH_SCRIPTS_DEST ${CMAKE_INSTALL_DATADIR}/luahost/scripts)
install(FILES scripts/app.lua DESTINATION ${LH_SCRIPTS_DEST})
install(DIRECTORY scripts/routes scripts/policies scripts/lib DESTINATION ${LH_SCRIPTS_DEST}
        FILES_MATCHING PATTERN "*.lua")
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DATADIR}/luahost/examples)
install(FILES README.md docs/architecture.md docs/lua-api.md docs/operations.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The configuration file and the unit name absolute paths under the prefix the install runs with
# (`cmake --install --prefix`, or CPack's /usr), so they are written at install time.
install(CODE "set(LH_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
set(LH_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
set(LH_SCRIPTS_DEST \"${LH_SCRIPTS_DEST}\")
set(LH_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
set(LH_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")")
install(SCRIPT cmake/install_config.cmake)

# ---- the .deb: `cpack -G DEB` in the build directory (packaging/debian/ has the maintainer
# scripts). Dependencies come from dpkg-shlibdeps on the binary.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME luahost)
set(CPACK_PACKAGE_VERSION ${LH_VERSION})
set(CPACK_PACKAGE_CONTACT "luahost maintainers <luahost@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Lua-scriptable HTTP host with the user-management API")
set(CPACK_PACKAGE_DESCRIPTION
    "luahost serves HTTP with libuv and llhttp, runs routes, policies and schemas written in Lua\n(LuaJIT) and keeps its data in MongoDB. It ships the user-management API as its first app.")
# Install with DESTDIR, so install-time code sees the real prefix (/usr) and /etc stays /etc.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr) # with CPACK_SET_DESTDIR, the prefix the install runs with
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION web)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# postinst creates the `luahost` system user with useradd (passwd; coreutils is essential).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/debian/conffiles ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
    ${CMAKE_SOURCE_DIR}/packaging/debian/prerm ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
