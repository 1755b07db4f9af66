/* Resolving --config NAME|FILE: a named preset, or a JSON file layered on one. Why layered: a
 * file that changes two fields of cpu-small should not have to spell out thirty. */
#include "arbitor/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ARB_CONFIG_FILE_MAX (1 << 20)

arb_status arb_train_config_resolve(const char *arg, arb_model_config *cfg) {
    if (!arg || !cfg) return arb_error(ARB_ERR_INVALID_ARG, "config: NULL argument");
    struct stat sb;
    if (stat(arg, &sb) != 0) {
        if (arb_model_config_named(arg, cfg) == ARB_OK) return ARB_OK;
        return arb_error(ARB_ERR_NOT_FOUND,
                         "config '%s' is neither a named configuration (seed, shakespeare, cpu-small, tiny) nor a file",
                         arg);
    }
    if (!S_ISREG(sb.st_mode)) return arb_error(ARB_ERR_IO, "config file '%s' is not a regular file", arg);
    if (sb.st_size == 0) return arb_error(ARB_ERR_FORMAT, "config file '%s' is empty", arg);
    if (sb.st_size > ARB_CONFIG_FILE_MAX)
        return arb_error(ARB_ERR_FORMAT, "config file '%s' is larger than %d bytes", arg, ARB_CONFIG_FILE_MAX);
    FILE *f = fopen(arg, "rb");
    if (!f) return arb_error(ARB_ERR_IO, "cannot open config file '%s': %s", arg, strerror(errno));
    char *text = malloc((size_t)sb.st_size + 1);
    if (!text) {
        fclose(f);
        return arb_error(ARB_ERR_OOM, "config: out of memory");
    }
    size_t got = fread(text, 1, (size_t)sb.st_size, f);
    fclose(f);
    text[got] = 0;
    if (got != (size_t)sb.st_size) {
        free(text);
        return arb_error(ARB_ERR_IO, "config file '%s': short read", arg);
    }
    cJSON *o = cJSON_Parse(text);
    const cJSON *nm = o ? cJSON_GetObjectItemCaseSensitive(o, "name") : NULL;
    arb_model_config base;
    if (!cJSON_IsString(nm) || arb_model_config_named(nm->valuestring, &base) != ARB_OK)
        arb_model_config_named("cpu-small", &base);
    cJSON_Delete(o);
    arb_status s = arb_model_config_from_json(text, &base);
    free(text);
    if (s != ARB_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", arb_last_error());
        return arb_error(s, "config file '%s': %s", arg, msg);
    }
    *cfg = base;
    return ARB_OK;
}
