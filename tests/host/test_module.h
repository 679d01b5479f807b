/* test_module.h: `luahost.test`, the module only the test host (luahost-test) registers. */
#ifndef LH_TEST_MODULE_H
#define LH_TEST_MODULE_H

#include "register.h"

extern const lh_module_t lh_test_module;

#endif
