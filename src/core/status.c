/* Status names, the thread-local last error, and the log callback.
 * Why thread-local: kernels and loaders may run on several threads; each caller reads the
 * message of its own failing call. */
#include "arbitor/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static _Thread_local char g_last_error[512];

static const char *const g_status_names[ARB_STATUS_COUNT] = {
    [ARB_OK] = "ok",
    [ARB_ERR_INVALID_ARG] = "invalid argument",
    [ARB_ERR_OOM] = "out of memory",
    [ARB_ERR_IO] = "I/O error",
    [ARB_ERR_FORMAT] = "bad file format",
    [ARB_ERR_SHAPE] = "shape mismatch",
    [ARB_ERR_DTYPE] = "bad dtype",
    [ARB_ERR_NOT_FOUND] = "not found",
    [ARB_ERR_OVERFLOW] = "size overflow",
    [ARB_ERR_UNSUPPORTED] = "unsupported",
    [ARB_ERR_CUDA] = "CUDA error",
    [ARB_ERR_INTERNAL] = "internal error",
};

const char *arb_status_str(arb_status s) {
    if ((int)s < 0 || s >= ARB_STATUS_COUNT) return "unknown status";
    return g_status_names[s];
}

const char *arb_last_error(void) { return g_last_error; }
void arb_clear_error(void) { g_last_error[0] = '\0'; }

static void default_log(arb_log_level level, const char *msg, void *user) {
    (void)user;
    static const char *const names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "arbitor %s: %s\n", names[level], msg);
}

static arb_log_fn g_log_fn = default_log;
static void *g_log_user = NULL;
static int g_log_level = -1; /* -1: not read from the environment yet */

void arb_log_set(arb_log_fn fn, void *user) {
    g_log_fn = fn ? fn : default_log;
    g_log_user = fn ? user : NULL;
}

void arb_log_set_level(arb_log_level level) { g_log_level = (int)level; }

static int log_level(void) {
    if (g_log_level < 0) {
        const char *e = getenv("ARB_LOG");
        int lv = ARB_LOG_WARN;
        if (e) {
            if (!strcasecmp(e, "debug")) lv = ARB_LOG_DEBUG;
            else if (!strcasecmp(e, "info")) lv = ARB_LOG_INFO;
            else if (!strcasecmp(e, "error")) lv = ARB_LOG_ERROR;
        }
        g_log_level = lv;
    }
    return g_log_level;
}

static void vlog(arb_log_level level, const char *fmt, va_list ap) {
    if ((int)level < log_level()) return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    g_log_fn(level, msg, g_log_user);
}

void arb_log(arb_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

arb_status arb_error(arb_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    /* Errors go to the caller through the status; the log sees them only at debug level so
     * a CLI that prints arb_last_error() does not print every message twice. */
    arb_log(ARB_LOG_DEBUG, "%s (%s)", g_last_error, arb_status_str(code));
    return code;
}

const char *arb_version(void) { return "0.1.0"; }
