/* Where a tool finds a file of the source tree (see paths.h). */
#include "core/paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *arb_tree_file(const char *rel, const char *env, char *buf, size_t cap) {
    const char *e = env ? getenv(env) : NULL;
    if (e) return e;
    if (access(rel, R_OK) == 0) return rel;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || !buf || cap == 0) return NULL;
    exe[n] = 0;
    char *sl = strrchr(exe, '/');
    if (sl) *sl = 0;
    for (int up = 1; up <= 2; up++) {
        int w = snprintf(buf, cap, "%s/%s/%s", exe, up == 1 ? ".." : "../..", rel);
        if (w > 0 && (size_t)w < cap && access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}
