# Runs at install time (install(SCRIPT) from cmake/install.cmake): writes the installed
# configuration file and the systemd unit with the paths of this install. CMAKE_INSTALL_PREFIX is
# the install's prefix (`cmake --install --prefix`, CPack's /usr); DESTDIR, when set, is only where
# the files land, never part of the paths written into them.
set(prefix "${CMAKE_INSTALL_PREFIX}")
# As GNUInstallDirs: the prefix /usr keeps its configuration in /etc.
if(prefix STREQUAL "/usr")
  set(confdir "/etc/luahost")
else()
  set(confdir "${prefix}/${LH_SYSCONFDIR}/luahost")
endif()
set(LH_INSTALLED_BINARY "${prefix}/${LH_BINDIR}/luahost")
set(LH_INSTALLED_CONFIG "${confdir}/luahost.conf")
set(LH_INSTALLED_CONFDIR "${confdir}")
set(LH_INSTALLED_DOCDIR "${prefix}/${LH_DOCDIR}")
set(scripts "${prefix}/${LH_SCRIPTS_DEST}")

# config/luahost.conf stays the one documented configuration: only the `scripts` line changes.
file(READ "${LH_SOURCE_DIR}/config/luahost.conf" conf)
set(default_line "  scripts = \"scripts\",\n")
string(FIND "${conf}" "${default_line}" at)
if(at LESS 0)
  message(FATAL_ERROR "config/luahost.conf: no line '  scripts = \"scripts\",' to point at ${scripts}")
endif()
string(REPLACE "${default_line}" "  scripts = \"${scripts}\",\n" conf "${conf}")

set(stage "$ENV{DESTDIR}")
set(unit_dir "${stage}${prefix}/lib/systemd/system")
file(MAKE_DIRECTORY "${stage}${confdir}" "${unit_dir}")
message(STATUS "Installing: ${stage}${confdir}/luahost.conf")
file(WRITE "${stage}${confdir}/luahost.conf" "${conf}")
message(STATUS "Installing: ${unit_dir}/luahost.service")
configure_file("${LH_SOURCE_DIR}/packaging/luahost.service.in" "${unit_dir}/luahost.service" @ONLY)
