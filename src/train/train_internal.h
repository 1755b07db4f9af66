/* Internal glue between the trainer and the checkpoint code (not public API). */
#ifndef ARB_TRAIN_INTERNAL_H
#define ARB_TRAIN_INTERNAL_H

#include "arbitor/safetensors.h"
#include "arbitor/train.h"

/* Adds every ternary tensor (4 tensors each) and every extra state tensor of m to w, by
 * reference (m must not change until commit); *update_state_json: malloc'd JSON object
 * {tensor name: hex bytes of its arb_update_state}. */
arb_status arb_ckpt_add_model(arb_st_writer *w, arb_model *m, char **update_state_json);
/* Checks the format tag and parses the config metadata. */
arb_status arb_ckpt_config(const arb_safetensors *st, const char *path, arb_model_config *cfg);
/* Validates and copies every tensor of m from st (nothing missing, nothing extra), then refreshes m. */
arb_status arb_ckpt_load_model_state(const arb_safetensors *st, const char *path, arb_model *m);

/* "checkpoint PATH: <last error>" with the same status (copies the message first: arb_error
 * formats into the buffer arb_last_error() points at). */
arb_status arb_ckpt_wrap_error(arb_status s, const char *path);

#endif
