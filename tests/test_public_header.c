/* The public header compiles as plain C17 on its own and its basic calls link. */
#include "arbitor.h"

#include "testutil.h"

static void test_header(void **state) {
    (void)state;
    assert_non_null(arb_version());
    assert_true(arb_dtype_size(ARB_BF16) == 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_header)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
